"""What a run leaves behind: near-duplicates dropped, examples in the store, three files, a summary.

The files (in ``<workspace>/synth/<pipeline>/``) are the OpenAI-format JSONL for fine-tuning,
a detailed JSON with each example's lineage, and the run's metadata (counts, failures by
reason, tokens and cost per provider). Examples reach the store through capture's client with
an id derived from the pipeline and the output's path, so re-running never stores one twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.synth.pipeline import Pipeline
from tuneloop.synth.runner import Node, RunResult

if TYPE_CHECKING:
    from tuneloop.capture import Tuneloop
    from tuneloop.config import Config
    from tuneloop.curate import Example
    from tuneloop.store import Store

RUN_SUFFIX = "_metadata.json"


@dataclass
class SynthExample:
    """One training example and where it came from."""

    id: str
    messages: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)


def run_dir(workspace: Path, pipeline: Pipeline) -> Path:
    return workspace / "synth" / pipeline.name


def output_paths(workspace: Path, pipeline: Pipeline) -> dict[str, Path]:
    """``NAME.jsonl`` (OpenAI chat), ``NAME_detailed.json``, ``NAME_metadata.json``."""
    directory = run_dir(workspace, pipeline)
    stem = pipeline.output.file or pipeline.name
    return {
        "examples": directory / f"{stem}.jsonl",
        "detailed": directory / f"{stem}_detailed.json",
        "run": directory / f"{stem}{RUN_SUFFIX}",
    }


def to_examples(pipeline: Pipeline, result: RunResult) -> list[SynthExample]:
    """The answer step's outputs as examples (user message from ``output.user`` if set)."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined)
    step = pipeline.answer_step
    examples = []
    for node in result.outputs:
        prompt = [dict(message) for message in node.messages]
        if pipeline.output.user is not None:
            user = env.from_string(pipeline.output.user).render(_visible(node))
            prompt = [m for m in prompt if m["role"] == "system"] + [
                {"role": "user", "content": user}
            ]
        if pipeline.output.system is not None:
            prompt = [{"role": "system", "content": pipeline.output.system}] + [
                m for m in prompt if m["role"] != "system"
            ]
        digest = hashlib.sha256(f"{pipeline.name}:{node.path}".encode()).hexdigest()[:24]
        examples.append(
            SynthExample(
                id=f"synth-{pipeline.name}-{digest}",
                messages=[*prompt, {"role": "assistant", "content": node.text}],
                metadata={
                    "pipeline": pipeline.name,
                    "step": step.name,
                    "provider": node.provider,
                    "model": node.model,
                    "path": node.path,
                    "parent": node.parent,
                    "variables": {k: v for k, v in _visible(node).items() if k in pipeline.vars},
                },
            )
        )
    return examples


def _visible(node: Node) -> dict[str, Any]:
    return {**node.variables, "item": node.variables}


def drop_near_duplicates(
    examples: list[SynthExample], threshold: float, existing: Iterable[Example] = ()
) -> list[SynthExample]:
    """New examples that nearly repeat another new one, or one of ``existing`` (the task's
    data as curation selects it, streamed), go, through curate's dedup (near in prompt and
    answer). Existing examples always win: the new near-copy is the one dropped.
    """
    from tuneloop.curate import Example, remove_near_copies

    wrapped = [
        Example(interaction_id=example.id, messages=example.messages, source="synthetic")
        for example in examples
    ]
    kept_ids = {
        example.interaction_id
        for example in remove_near_copies(wrapped, existing, threshold=threshold).kept
    }
    return [example for example in examples if example.id in kept_ids]


def existing_examples(store: Store, config: Config, pipeline: Pipeline) -> Iterator[Example]:
    """The task's examples that curation would keep, streamed from the store in batches, less
    this pipeline's own earlier output (a re-run must find its examples again, not drop them
    as near-copies). Exact duplicates are not merged: dedup treats them as one."""
    from tuneloop.curate import stream_examples

    return stream_examples(
        store, config.curate, task=pipeline.task, exclude_metadata={"pipeline": pipeline.name}
    )


def store_examples(
    client: Tuneloop, pipeline: Pipeline, result: RunResult, examples: list[SynthExample]
) -> int:
    """Log each example as a ``synthetic`` interaction; returns how many are new or known."""
    usage = {node.path: node.usage for node in result.outputs}
    stored = 0
    for example in examples:
        prompt_tokens, completion_tokens, cost = usage.get(example.metadata["path"], (None,) * 3)
        interaction_id = client.log(
            example.messages[:-1],
            example.messages[-1]["content"],
            id=example.id,
            model=example.metadata["model"] or None,
            provider=example.metadata["provider"] or None,
            task=pipeline.task,
            source="synthetic",
            metadata=example.metadata,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
        )
        stored += interaction_id is not None
    return stored


def summary(
    pipeline: Pipeline, result: RunResult, examples: list[SynthExample], *, n: int
) -> dict[str, Any]:
    return {
        "pipeline": pipeline.name,
        "task": pipeline.task,
        "inputs": n,
        "examples": len(examples),
        "near_duplicates_dropped": len(result.outputs) - len(examples),
        "steps": {name: asdict(stats) for name, stats in result.steps.items()},
        "failed": result.failed,
        "rejected": result.rejected,
        "failures_by_reason": result.failures_by_reason,
        "failures": result.failures,
        # Calls in flight when an earlier run died, sent again under their idempotency keys.
        "resent_after_crash": sum(stats.resent for stats in result.steps.values()),
        "providers": {name: asdict(spend) for name, spend in result.spend.items()},
        "cost_usd": result.cost_usd,
        "seconds": round(result.seconds, 3),
    }


def write_files(
    paths: dict[str, Path], examples: list[SynthExample], run_summary: dict[str, Any]
) -> dict[str, Path]:
    """The three files, each written beside its target and renamed (never half-written)."""
    from tuneloop.formats import atomic_write_text

    lines = "".join(json.dumps({"messages": e.messages}) + "\n" for e in examples)
    detailed = json.dumps([asdict(example) for example in examples], indent=2)
    metadata = json.dumps(
        {**run_summary, "status": "finished", "finished_at": time.time()}, indent=2
    )
    for key, text in (("examples", lines), ("detailed", detailed), ("run", metadata)):
        atomic_write_text(paths[key], text)
    return paths


def mark_running(path: Path, pipeline: Pipeline, n: int) -> None:
    """Say a run started, so ``synth status`` and the next run can tell it was interrupted."""
    from tuneloop.formats import atomic_write_text

    previous = read_run(path) or {}
    state = {**previous, "pipeline": pipeline.name, "status": "running", "inputs": n}
    state["pid"] = os.getpid()
    state["started_at"] = time.time()
    atomic_write_text(path, json.dumps(state, indent=2))


def run_state(state: dict[str, Any]) -> str:
    """``finished``, ``running`` (its process is alive) or ``interrupted`` (it is not)."""
    if state.get("status") != "running":
        return str(state.get("status"))
    pid = state.get("pid")
    if isinstance(pid, int) and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "interrupted"
        except PermissionError:
            return "running"
        return "running"
    return "interrupted"


def read_run(path: Path) -> dict[str, Any] | None:
    from tuneloop.jsontext import parse_json

    try:
        parsed = parse_json(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return parsed.value if parsed.ok and isinstance(parsed.value, dict) else None
