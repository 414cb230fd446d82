"""``tuneloop eval``: score models on a dataset's eval split and compare them side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress

from tuneloop.cli.common import ConfigOption, console, err_console, load

if TYPE_CHECKING:
    from tuneloop.config import Config
    from tuneloop.providers import Provider
    from tuneloop.store import Store


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Models to compare: v1, latest, production, base, teacher, or a provider spec "
            "(callable:…, local:…, registry:TASK@vN)."
        ),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="NAME@VERSION (default: task's newest).")
    ] = None,
    split: Annotated[str, typer.Option(help="Which split to score.")] = "eval",
    max_examples: Annotated[int | None, typer.Option(help="evaluate.max_examples")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="evaluate.max_new_tokens")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="User metric NAME=module:function (repeatable); adds to evaluate.metrics."
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            help="Metadata key to break results down by (repeatable); adds to evaluate.group_by."
        ),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Evaluate each model on the same examples and print one comparison table.

    Exits non-zero, naming the first error, when a model failed on any example.
    """
    from tuneloop.curate.build import load_split, resolve_dataset
    from tuneloop.errors import InputError
    from tuneloop.evaluate import (
        attach_metadata,
        breakdown_table,
        comparison_table,
        evaluate_provider,
        resolve_metrics,
        run_errors,
    )

    config, store = load(
        config_path,
        **{"evaluate.max_examples": max_examples, "evaluate.max_new_tokens": max_new_tokens},
    )
    task = task or config.task
    specs = dict(config.evaluate.metrics)
    for item in metric or []:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise InputError(f"--metric {item!r} is not NAME=module:function")
        specs[name] = spec
    metrics = resolve_metrics(specs)
    group_by = [
        *config.evaluate.group_by,
        *(key for key in by or [] if key not in config.evaluate.group_by),
    ]
    chosen = resolve_dataset(store, dataset or task)
    examples = load_split(chosen, split, with_ids=bool(group_by))
    examples = examples[: config.evaluate.max_examples]
    if group_by:
        examples = attach_metadata(store, examples)
    # every model is resolved before any is run, so a typo fails before minutes of generation
    providers = [_provider(name, config, store, task) for name in models]
    runs = []
    for name, provider, version_id in providers:
        with Progress(console=console, transient=True) as bars:
            bar = bars.add_task(f"evaluate {name}", total=len(examples))
            run = evaluate_provider(
                store,
                provider,
                examples,
                task=task,
                label=name,
                dataset_id=chosen.id,
                split=split,
                model_version_id=version_id,
                max_new_tokens=config.evaluate.max_new_tokens,
                batch_size=config.evaluate.batch_size,
                progress=lambda done, _total, bar=bar, bars=bars: bars.update(bar, completed=done),
                metrics=metrics,
                group_by=group_by,
            )
        runs.append(run)
    console.print(comparison_table(runs))
    for key in group_by:
        console.print(breakdown_table(runs, key))
    errors = run_errors(runs)
    for line in errors:
        err_console.print(f"[bold red]error:[/bold red] {line}", highlight=False)
    if errors:
        raise typer.Exit(1)


def _provider(
    name: str, config: Config, store: Store, task: str
) -> tuple[str, Provider, int | None]:
    """(label, provider, model version id) of one model argument."""
    from tuneloop.providers import build_provider
    from tuneloop.registry import provider_for_version, resolve_version

    provider: Any
    if name == "base":
        return name, build_provider(config.train.base_model, store=store), None
    if name == "teacher":
        return name, build_provider(config.teacher, store=store), None
    if ":" in name:
        return name, build_provider(name, store=store), None
    version = resolve_version(store, task, name)
    provider = provider_for_version(version)
    return version.name, provider, version.id
