"""``synthesize``: one pipeline run from file to store and files, as the CLI and tests use it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.errors import InputError
from tuneloop.jsontext import dumps_canonical
from tuneloop.synth.output import (
    RUN_SUFFIX,
    drop_near_duplicates,
    existing_examples,
    mark_running,
    output_paths,
    read_run,
    run_state,
    store_examples,
    summary,
    to_examples,
    write_files,
)
from tuneloop.synth.pipeline import load_pipeline
from tuneloop.synth.runner import Progress, run_pipeline

if TYPE_CHECKING:
    from tuneloop.config import Config

CACHE_FILE = "cache.sqlite"


def cache_path(config: Config) -> Path:
    """One answer cache per workspace: the same request is never paid for twice, by any run."""
    return config.workspace / "synth" / CACHE_FILE


def synthesize(
    config: Config,
    pipeline_file: Path,
    *,
    n: int | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the pipeline; returns the run summary (also written as the run-metadata file).

    A run that was interrupted (its metadata still says ``running``) is only continued with
    ``resume``, so a second terminal cannot start the same paid run by accident.
    """
    from tuneloop.capture import Tuneloop
    from tuneloop.store import Store

    pipeline = load_pipeline(pipeline_file, providers=config.providers)
    count = n or pipeline.n
    paths = output_paths(config.workspace, pipeline)
    previous = read_run(paths["run"])
    state = run_state(previous) if previous is not None else None
    if state == "running":
        raise InputError(
            f"{pipeline_file}: pipeline {pipeline.name!r} is running now "
            f"(process {previous and previous.get('pid')}); wait for it or stop it first"
        )
    if state == "interrupted" and not resume:
        raise InputError(
            f"{pipeline_file}: pipeline {pipeline.name!r} has an interrupted run; "
            "add --resume to continue it (answers already paid for are reused)"
        )
    mark_running(paths["run"], pipeline, count)
    store = Store(config.store_url)
    try:
        result = run_pipeline(
            pipeline,
            cache_path(config),
            n=count,
            store=store,
            providers=config.providers,
            progress=progress,
        )
        examples = drop_near_duplicates(
            to_examples(pipeline, result),
            pipeline.output.near_dup_threshold,
            existing_examples(store, config, pipeline),
        )
        run_summary = summary(pipeline, result, examples, n=count)
        run_summary["stored"] = store_examples(Tuneloop(config, store), pipeline, result, examples)
        run_summary["files"] = {
            key: str(path) for key, path in write_files(paths, examples, run_summary).items()
        }
        return run_summary
    finally:
        store.close()


def run_statuses(config: Config) -> list[dict[str, Any]]:
    """The latest run of every pipeline in the workspace, from its run-metadata file."""
    root = config.workspace / "synth"
    runs = []
    for path in sorted(root.glob(f"*/*{RUN_SUFFIX}")) if root.is_dir() else []:
        state = read_run(path)
        if state is not None:
            runs.append({**state, "status": run_state(state)})
    return runs


def vary_and_store(
    config: Config,
    source: str,
    provider_spec: str,
    *,
    task: str,
    per_example: int = 3,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Vary the prompts of ``source``'s examples; store them as synthetic and write a JSONL."""
    from tuneloop.capture import Tuneloop
    from tuneloop.formats import atomic_write_text
    from tuneloop.providers import build_provider
    from tuneloop.store import Store
    from tuneloop.synth.cache import AnswerCache
    from tuneloop.synth.vary import load_examples, vary_prompts

    examples = load_examples(source, config, limit=limit)
    if not examples:
        raise InputError(f"{source}: no chat examples to vary")
    store = Store(config.store_url)
    cache = AnswerCache(cache_path(config))
    try:
        provider = build_provider(provider_spec, store=store, providers=config.providers)
        report = vary_prompts(
            provider, examples, per_example=per_example, cache=cache, progress=progress
        )
        client = Tuneloop(config, store)
        stored = 0
        for variation in report.examples:
            digest = hashlib.sha256(
                dumps_canonical([provider_spec, variation.messages]).encode()
            ).hexdigest()[:24]
            stored += (
                client.log(
                    variation.messages[:-1],
                    variation.messages[-1]["content"],
                    id=f"synth-vary-{digest}",
                    task=task,
                    provider=provider.name,
                    source="synthetic",
                    metadata={**variation.metadata, "pipeline": "vary", "step": "vary"},
                )
                is not None
            )
        path = config.workspace / "synth" / "vary" / "examples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            path, "".join(json.dumps({"messages": v.messages}) + "\n" for v in report.examples)
        )
    finally:
        cache.close()
        store.close()
    return {
        "source_examples": len(examples),
        "variations": len(report.examples),
        "stored": stored,
        "cached": report.cached,
        "failures_by_reason": dict(report.failures),
        "cost_usd": round(report.cost_usd, 8),
        "file": str(path),
    }
