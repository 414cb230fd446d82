"""``tuneloop eval``: score models on a dataset's eval split and compare them side by side."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress

from tuneloop.cli.common import ConfigOption, console, load


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
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Evaluate each model on the same examples and print one comparison table."""
    from tuneloop.curate.build import load_split, resolve_dataset
    from tuneloop.evaluate.report import comparison_table
    from tuneloop.evaluate.runner import evaluate_provider
    from tuneloop.providers import build_provider, provider_for_version
    from tuneloop.registry import resolve_version

    config, store = load(
        config_path,
        **{"evaluate.max_examples": max_examples, "evaluate.max_new_tokens": max_new_tokens},
    )
    task = task or config.task
    chosen = resolve_dataset(store, dataset or task)
    examples = load_split(chosen, split)[: config.evaluate.max_examples]
    runs = []
    for name in models:
        version_id = None
        if name == "base":
            provider = build_provider(config.train.base_model, store=store)
        elif name == "teacher":
            provider = build_provider(config.teacher, store=store, providers=config.providers)
        elif ":" in name:
            provider = build_provider(name, store=store, providers=config.providers)
        else:
            version = resolve_version(store, task, name)
            provider, version_id, name = provider_for_version(version), version.id, version.name
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
            )
        runs.append(run)
    console.print(comparison_table(runs))
