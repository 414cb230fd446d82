"""``tuneloop eval``: run suites or models, compare runs, report, gate, leaderboard; read
gateway traffic (``shadow``, ``outcomes``).

``tuneloop eval base v1`` (no subcommand) is ``tuneloop eval run base v1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress
from typer.core import TyperGroup

from tuneloop.cli.common import ConfigOption, console, err_console, load
from tuneloop.cli.options import config_options
from tuneloop.config import TrafficConfig

if TYPE_CHECKING:
    from tuneloop.config import Config
    from tuneloop.providers import Provider
    from tuneloop.store import Store


class _RunByDefault(TyperGroup):
    """Arguments that are not a subcommand go to ``run`` (``eval base v1``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_RunByDefault,
    help="Evaluate: run suites or models, compare, report, gate, leaderboard.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def run(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="SUITE.toml | MODEL...",
            help="An eval suite file, or models to compare: v1, latest, production, base, teacher, "
            "or a provider spec (callable:…, local:…, registry:TASK@vN).",
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
    out: Annotated[
        Path | None,
        typer.Option(help="Suite results folder (default: <artifacts>/evals/SUITE/<time>)."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Run a suite (reports, ratings, gate) or compare models on a dataset split.

    Exits non-zero, naming the first error, when a model failed on any example.
    """
    config, store = load(
        config_path,
        **{"evaluate.max_examples": max_examples, "evaluate.max_new_tokens": max_new_tokens},
    )
    if len(targets) == 1 and targets[0].endswith(".toml"):
        runs = _run_suite(Path(targets[0]), config, store, out)
    else:
        runs = _run_models(
            targets, config, store, task or config.task, dataset, split, metric or [], by or []
        )
    from tuneloop.evaluate import run_errors

    errors = run_errors(runs)
    for line in errors:
        err_console.print(f"[bold red]error:[/bold red] {line}", highlight=False)
    if errors:
        raise typer.Exit(1)


def _progress(bars: Progress) -> Any:
    def factory(name: str, total: int) -> Any:
        bar = bars.add_task(name, total=total)
        return lambda done, _total: bars.update(bar, completed=done)

    return factory


def _run_suite(path: Path, config: Config, store: Store, out: Path | None) -> list[Any]:
    from tuneloop.evaluate import breakdown_table, comparison_table
    from tuneloop.evaluate.suite import load_suite, run_suite

    suite = load_suite(path)
    task = suite.task or config.task
    resolved: dict[str, tuple[Provider, int | None]] = {}

    def resolve(spec: str) -> tuple[Provider, int | None]:
        if spec not in resolved:  # each model is built (and loaded) once per run
            _, provider, version_id = _provider(spec, config, store, task)
            resolved[spec] = (provider, version_id)
        return resolved[spec]

    with Progress(console=console, transient=True) as bars:
        result = run_suite(suite, store, config, resolve, progress=_progress(bars), out_dir=out)
    runs = list(result.runs.values())
    console.print(comparison_table(runs, title=f"suite {suite.name}"))
    for key in runs[0].metrics.get("breakdown") or {}:
        console.print(breakdown_table(runs, key))
    if result.leaderboard:
        from tuneloop.evaluate import Rating, leaderboard_table

        console.print(leaderboard_table([Rating(**row) for row in result.leaderboard]))
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if result.gate is not None:
        verdict = "[green]passed[/green]" if result.gate["passed"] else "[red]failed[/red]"
        console.print(
            f"gate {verdict}: {sum(c['passed'] for c in result.gate['clauses'])} of "
            f"{len(result.gate['clauses'])} clauses hold"
        )
    console.print(f"report: {result.directory / 'report.html'}")
    return runs


def _run_models(
    models: list[str],
    config: Config,
    store: Store,
    task: str,
    dataset: str | None,
    split: str,
    metric: list[str],
    by: list[str],
) -> list[Any]:
    from tuneloop.curate import load_split, resolve_dataset
    from tuneloop.errors import InputError
    from tuneloop.evaluate import (
        attach_metadata,
        breakdown_table,
        comparison_table,
        evaluate_provider,
        resolve_metrics,
    )

    specs = dict(config.evaluate.metrics)
    for item in metric:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise InputError(f"--metric {item!r} is not NAME=module:function")
        specs[name] = spec
    metrics = resolve_metrics(specs)
    group_by = list(dict.fromkeys([*config.evaluate.group_by, *by]))
    chosen = resolve_dataset(store, dataset or task, workspace=config.workspace)
    examples = load_split(chosen, split, with_ids=bool(group_by))
    examples = examples[: config.evaluate.max_examples]
    if group_by:
        examples = attach_metadata(store, examples)
    # every model is resolved before any is run, so a typo fails before minutes of generation
    providers = [_provider(name, config, store, task) for name in models]
    runs = []
    with Progress(console=console, transient=True) as bars:
        progress = _progress(bars)
        for name, provider, version_id in providers:
            runs.append(
                evaluate_provider(
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
                    progress=progress(f"evaluate {name}", len(examples)),
                    metrics=metrics,
                    group_by=group_by,
                )
            )
    console.print(comparison_table(runs))
    for key in group_by:
        console.print(breakdown_table(runs, key))
    return runs


def _provider(
    name: str, config: Config, store: Store, task: str
) -> tuple[str, Provider, int | None]:
    """(label, provider, model version id) of one model argument."""
    from tuneloop.providers import build_provider
    from tuneloop.registry import resolve_version

    if name == "base":
        return name, build_provider(config.train.base_model, store=store), None
    if name == "teacher":
        return name, build_provider(config.teacher, store=store), None
    if ":" in name:
        return name, build_provider(name, store=store), None
    version = resolve_version(store, task, name)
    provider = build_provider(f"registry:{task}@{version.name}", store=store)
    return version.name, provider, version.id


@eval_app.command("compare")
def compare(
    run_ids: Annotated[list[int], typer.Argument(help="Eval run ids (see `eval list`).")],
    by: Annotated[list[str] | None, typer.Option(help="Breakdown key to show too.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Stored eval runs side by side, with intervals."""
    from sqlalchemy import select

    from tuneloop.errors import InputError
    from tuneloop.evaluate import breakdown_table, comparison_table
    from tuneloop.store import EvalRun

    _config, store = load(config_path)
    with store.session() as session:
        found = {r.id: r for r in session.scalars(select(EvalRun).where(EvalRun.id.in_(run_ids)))}
    missing = [str(i) for i in run_ids if i not in found]
    if missing:
        raise InputError(f"no eval run {', '.join(missing)} (see `tuneloop eval list`)")
    runs = [found[i] for i in run_ids]
    console.print(comparison_table(runs))
    for key in by or []:
        console.print(breakdown_table(runs, key))


@eval_app.command("list")
def list_runs(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    limit: Annotated[int, typer.Option(help="Newest runs to show.")] = 20,
    config_path: ConfigOption = None,
) -> None:
    """Stored eval runs, newest first."""
    from rich.table import Table
    from sqlalchemy import select

    from tuneloop.store import EvalRun

    _config, store = load(config_path)
    query = select(EvalRun).order_by(EvalRun.id.desc()).limit(limit)
    if task:
        query = query.where(EvalRun.task == task)
    table = Table(title="eval runs")
    for column in ("id", "task", "label", "provider", "status", "n", "errors", "created"):
        table.add_column(column)
    with store.session() as session:
        for r in session.scalars(query):
            table.add_row(
                str(r.id),
                r.task,
                r.label,
                r.provider,
                r.status,
                str(r.metrics.get("n", "–")),
                str(r.metrics.get("errors", "–")),
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(table)


@eval_app.command("report")
def report(
    suite: Annotated[str, typer.Argument(help="Suite file or name, or a results folder.")],
    config_path: ConfigOption = None,
) -> None:
    """Print the markdown summary of a suite's newest results and where its HTML report is."""
    from tuneloop.evaluate.suite import latest_result

    config, _store = load(config_path)
    result = latest_result(config, suite)
    directory = Path(result["directory"])
    summary = directory / "summary.md"
    console.print(summary.read_text(encoding="utf-8") if summary.is_file() else "", markup=False)
    console.print(f"HTML report: {directory / 'report.html'}")


@eval_app.command("gate")
def gate(
    suite: Annotated[str, typer.Argument(help="Suite file (its [gate]) or a results folder.")],
    config_path: ConfigOption = None,
) -> None:
    """Check the suite's gate on its newest results; exits 1 naming each failing clause."""
    from tuneloop.errors import InputError
    from tuneloop.evaluate.gates import check_gate
    from tuneloop.evaluate.suite import latest_result, load_suite

    config, _store = load(config_path)
    result = latest_result(config, suite)
    if suite.endswith(".toml"):
        spec = load_suite(Path(suite)).gate
        if spec is None:
            raise InputError(f"suite {suite} has no [gate] section")
        outcome = check_gate(spec, result)
        clauses = [(c.passed, c.describe()) for c in outcome.clauses]
        passed = outcome.passed
    elif result.get("gate"):
        clauses = [
            (
                c["passed"],
                f"{'ok' if c['passed'] else 'FAILED'}: {c['clause']} ({c['left']} vs {c['right']})",
            )
            for c in result["gate"]["clauses"]
        ]
        passed = result["gate"]["passed"]
    else:
        raise InputError(f"results of {suite} have no gate; pass the suite file")
    for ok, line in clauses:
        (console if ok else err_console).print(line, highlight=False, markup=False)
    if not passed:
        failing = "; ".join(line.removeprefix("FAILED: ") for ok, line in clauses if not ok)
        err_console.print(f"gate failed: {failing}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print("gate passed")


@eval_app.command("leaderboard")
def leaderboard_command(
    source: Annotated[
        str,
        typer.Argument(help="Suite file or name (its newest battles), or a battles JSONL file."),
    ],
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds.")] = 1000,
    markdown: Annotated[bool, typer.Option(help="Print markdown instead of a table.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Bradley–Terry ratings with 95 % intervals, interval ranks and online Elo."""
    from tuneloop.evaluate import leaderboard, leaderboard_markdown, leaderboard_table
    from tuneloop.evaluate.ratings import read_battles
    from tuneloop.evaluate.suite import latest_result

    path = Path(source)
    if path.suffix == ".jsonl":
        battles = read_battles(path)
    else:
        config, _store = load(config_path)
        battles = read_battles(Path(latest_result(config, source)["directory"]) / "battles.jsonl")
    rows = leaderboard(battles, rounds=rounds)
    if markdown:
        console.print(leaderboard_markdown(rows), markup=False)
    else:
        console.print(leaderboard_table(rows))


def _time_option(value: str | None, option: str) -> Any:
    from tuneloop.capture import parse_time

    return None if value is None else parse_time(value, option)


TimeOption = Annotated[str | None, typer.Option(help="ISO-8601 time or date (UTC if no zone).")]


@eval_app.command("shadow")
@config_options("evaluate.traffic", TrafficConfig)
def shadow(
    candidate: Annotated[
        str, typer.Option(help="The shadow version: vN (or TASK@vN) of the task.")
    ],
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    since: TimeOption = None,
    until: TimeOption = None,
    served_by: Annotated[
        str | None, typer.Option(help="Only pairs whose served answer came from this model.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's calls.")] = None,
    suite: Annotated[
        Path | None,
        typer.Option(help="An eval suite whose metrics (and judge) to apply to the pairs."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Compare a shadow version with what served the same gateway requests: agreement, checks,
    quality against user corrections, judge preference, latency and cost, with 95 % intervals."""
    import json

    from tuneloop.evaluate import PairwiseJudge, analyse_shadow, resolve_metrics
    from tuneloop.providers import build_provider

    config, store = load(config_path, **overrides)
    settings = config.evaluate.traffic
    metrics: dict[str, Any] = dict(config.evaluate.metrics)
    judge_spec = settings.judge
    notes: list[str] = []
    if suite is not None:
        from tuneloop.evaluate import load_suite, suite_metrics

        loaded = load_suite(suite)
        # judged on a sample below, not on every pair
        metrics.update(suite_metrics(loaded.model_copy(update={"judge": None}), store, notes))
        judge_spec = judge_spec or (loaded.judge.provider if loaded.judge else None)
    judge = None
    if judge_spec:
        from tuneloop.evaluate.judges import JudgeCache

        judge = PairwiseJudge(build_provider(judge_spec, store=store), cache=JudgeCache(store))
    report = analyse_shadow(
        store,
        task or config.task,
        candidate,
        metrics=resolve_metrics(metrics),
        judge=judge,
        judge_sample=settings.judge_sample,
        weak_below=settings.weak_below,
        since=_time_option(since, "--since"),
        until=_time_option(until, "--until"),
        served_by=served_by,
        tenant=tenant,
    )
    report.notes = notes + report.notes
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    _print_shadow(report)


def _print_shadow(report: Any) -> None:
    from rich.table import Table

    from tuneloop.evaluate import describe_estimate as describe

    table = Table(title=f"{report.candidate} in shadow: {report.pairs} pairs")
    for column in ("measure", "served", "candidate", "candidate − served"):
        table.add_column(column)
    labels = {"exact": "same text", "json_equal": "same JSON"}
    for name, estimate in report.agreement.items():
        table.add_row(labels.get(name, name), "", describe(estimate.to_dict()), "")
    if report.checks_passed is not None:
        table.add_row("passed the task's checks", "", describe(report.checks_passed.to_dict()), "")
    for name, paired in report.scores.items():
        label = name if name in ("valid_json", "latency_ms") else f"{name} vs correction"
        digits = 1 if name == "latency_ms" else 3
        table.add_row(
            label,
            describe(paired["served"], digits),
            describe(paired["candidate"], digits),
            describe(paired["delta"], digits),
        )
    table.add_row(
        "cost USD",
        describe(report.cost["served"], 5),
        describe(report.cost["candidate"], 5),
        describe(report.cost["delta"], 5),
    )
    if report.judge is not None:
        judge = report.judge
        table.add_row(
            f"judge prefers candidate ({judge['candidate_wins']} won, {judge['served_wins']} "
            f"lost, {judge['ties']} tied)",
            "",
            describe(judge["candidate_preference"]),
            "",
        )
    console.print(table)
    if report.served_by:
        served = ", ".join(f"{name} {count}" for name, count in report.served_by.most_common())
        console.print(f"served by: {served}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


@eval_app.command("outcomes")
@config_options("evaluate.traffic", TrafficConfig, exclude=("judge", "judge_sample"))
def outcomes(
    task: Annotated[str | None, typer.Option(help="Task (default: config task).")] = None,
    since: TimeOption = None,
    until: TimeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """User outcomes per model version (thumbs-up rate, corrections, acceptance, mean reward)
    with 95 % intervals, counted in the store."""
    import json

    from rich.table import Table

    from tuneloop.evaluate import describe_estimate as describe
    from tuneloop.evaluate import outcomes_by_version

    config, store = load(config_path, **overrides)
    report = outcomes_by_version(
        store,
        task or config.task,
        since=_time_option(since, "--since"),
        until=_time_option(until, "--until"),
        weak_below=config.evaluate.traffic.weak_below,
    )
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    table = Table(title=f"outcomes of task {report.task}")
    for column in ("version", "calls", "rated", "thumbs up", "corrected", "accepted", "reward"):
        table.add_column(column)
    for row in report.versions:
        table.add_row(
            row.version,
            str(row.calls),
            str(row.rated),
            describe(row.thumbs_up.to_dict()),
            describe(row.corrections.to_dict()),
            describe(row.acceptance.to_dict()),
            describe(row.reward.to_dict()),
        )
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
