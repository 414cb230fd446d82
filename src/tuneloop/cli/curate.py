"""``tuneloop dataset build|list|validate``: versioned datasets from the captured interactions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, load, load_read_only
from tuneloop.cli.options import config_options
from tuneloop.config import CurateConfig
from tuneloop.errors import InputError

dataset_app = typer.Typer(help="Build, list and validate training datasets.", no_args_is_help=True)

MAX_PROBLEM_LINES = 50


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
@config_options("curate", CurateConfig)
def build(
    task: Annotated[str | None, typer.Option(help="Task to curate (default: config task).")] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the task).")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face tokenizer (path, hub id or builtin:tiny) for exact token counts; "
            "without it tokens are estimated at 4 characters each."
        ),
    ] = None,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Filter, deduplicate and split the task's interactions into a new dataset version."""
    from tuneloop.curate.build import build_dataset, latest_dataset

    config, store = load(config_path, **overrides)
    dataset_name = name or task or config.task
    previous = latest_dataset(store, dataset_name)
    dataset = build_dataset(
        store,
        config,
        task=task,
        name=name,
        tokenizer=_load_tokenizer(tokenizer) if tokenizer else None,
    )
    if previous is not None and previous.id == dataset.id:
        console.print(
            f"[yellow]unchanged[/yellow]: same content as [bold]{dataset.label}[/bold] "
            f"({dataset.path})"
        )
        return
    _print_build(dataset.label, dataset.path, dataset.stats)


def _print_build(label: str, path: str, stats: dict[str, Any]) -> None:
    counts = stats.get("counts", {})
    console.print(f"built [bold]{label}[/bold] in {path}")
    console.print(
        f"  examples: {counts.get('train', 0)} train, {counts.get('eval', 0)} eval "
        f"(from {stats.get('candidates', 0)} candidates, {stats.get('dropped', 0)} dropped)"
    )
    for reason, count in stats.get("drop_reasons", {}).items():
        console.print(f"    dropped {count:>5}  {reason}", highlight=False)
    tokens = stats.get("tokens", {})
    train_tokens = tokens.get("train", {})
    console.print(
        f"  tokens: {train_tokens.get('total', 0):,} train "
        f"(mean {train_tokens.get('mean', 0)}, max {train_tokens.get('max', 0)}), "
        f"{tokens.get('eval', {}).get('total', 0):,} eval; {tokens.get('method')}"
    )
    if tokens.get("over_max_length"):
        console.print(
            f"  [yellow]{tokens['over_max_length']} examples exceed train.max_length "
            f"({tokens.get('max_length')}) and will be truncated[/yellow]"
        )
    coverage = stats.get("coverage", {})
    categories = sorted(set(coverage.get("train", {})) | set(coverage.get("eval", {})))
    if categories:
        parts = [
            f"{c} {coverage.get('train', {}).get(c, 0)}/{coverage.get('eval', {}).get(c, 0)}"
            for c in categories
        ]
        console.print(f"  coverage (train/eval): {', '.join(parts)}", highlight=False)
    cost = stats.get("cost_estimate", {})
    if cost:
        approx = "~" if cost.get("estimated_tokens") else ""
        console.print(
            f"  training cost, {cost.get('epochs')} epochs of "
            f"{approx}{cost.get('training_tokens', 0):,} train tokens:"
        )
        for target, usd in cost.get("usd", {}).items():
            console.print(f"    {target:<26} {approx}${usd:,.2f}", highlight=False)


@dataset_app.command("list")
def list_command(
    name: Annotated[str | None, typer.Option(help="Only versions of this dataset.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Every dataset version with its size, tokens and content hash."""
    from tuneloop.curate.build import list_datasets

    _, store = load_read_only(config_path)
    datasets = list_datasets(store, name=name)
    if not datasets:
        console.print("no datasets yet (run `tuneloop dataset build`)")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("dataset", "task", "created"):
        table.add_column(column, no_wrap=column != "task")
    for column in ("train", "eval", "tokens"):
        table.add_column(column, justify="right")
    table.add_column("hash")
    for dataset in datasets:
        counts = dataset.stats.get("counts", {})
        tokens = dataset.stats.get("tokens", {}).get("train", {}).get("total")
        table.add_row(
            dataset.label,
            dataset.task,
            f"{dataset.created_at:%Y-%m-%d %H:%M}",
            str(counts.get("train", "-")),
            str(counts.get("eval", "-")),
            f"{tokens:,}" if isinstance(tokens, int) else "-",
            dataset.content_hash[:10],
        )
    console.print(table)


@dataset_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="JSONL file in OpenAI/Together chat format.")],
) -> None:
    """Check every line of a fine-tuning file; exit 1 and list problems by line if any."""
    from tuneloop.curate.validate import validate_jsonl

    report = validate_jsonl(file)
    shown = 0
    for line in report.invalid:
        for problem in line.problems:
            if shown < MAX_PROBLEM_LINES:
                console.print(f"{file}:{line.line}: {problem}", highlight=False, soft_wrap=True)
            shown += 1
    if shown > MAX_PROBLEM_LINES:
        console.print(f"... and {shown - MAX_PROBLEM_LINES} more problems")
    if report.ok:
        console.print(f"[green]ok[/green] {report.summary()}", highlight=False)
        return
    console.print(f"[red]invalid[/red] {report.summary()}", highlight=False)
    raise typer.Exit(1)


def _load_tokenizer(spec: str) -> Any:
    from tuneloop.assets import resolve_model_path

    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("--tokenizer needs transformers (pip install 'tuneloop[local]')") from None
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(spec))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load tokenizer {spec!r}: {exc}") from None
