"""``tuneloop providers list|check`` and ``tuneloop ask``: the configured models, from the shell.

Answers go to stdout (so they can be piped); who answered, tokens, cost and the fallback trail go
to stderr. Keys are never printed: only whether the variable that holds one is set.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tuneloop.cli.common import ConfigOption, console, err_console

if TYPE_CHECKING:
    from tuneloop.config import Config, ProviderSettings
    from tuneloop.providers import Completion, Provider
    from tuneloop.store import Store

providers_app = typer.Typer(help="Model providers: list them, check one.", no_args_is_help=True)
CHECK_PROMPT = "Reply with the single word: ok"


def register(app: typer.Typer) -> None:
    app.add_typer(providers_app, name="providers")
    app.command("ask")(ask)


def _config(config_path: Path | None) -> Config:
    from tuneloop.config import load_config

    return load_config(config_path)


def _store(config: Config, spec: str) -> Store | None:
    """The store, opened only when a spec needs it (``registry:`` specs, directly or in a chain)."""
    mentions = [spec, *(m for p in config.providers.values() for m in p.members)]
    if not any("registry:" in text for text in mentions):
        return None
    from tuneloop.store import Store

    return Store(config.store_url)


def _resolve(spec: str, config: Config) -> Provider:
    """A provider from a spec, or from a bare configured name (``claude`` = ``provider:claude``)."""
    from tuneloop.providers import build_provider

    if ":" not in spec and spec in config.providers:
        spec = f"provider:{spec}"
    return build_provider(spec, store=_store(config, spec), providers=config.providers)


def _key_status(settings: ProviderSettings) -> tuple[str, str]:
    """(variable, "set" / "not set" / "-"), never the key itself."""
    import os

    from tuneloop.providers.remote import KINDS, key_env_of

    if settings.kind not in KINDS:
        return "-", "-"
    variable = key_env_of(settings)
    if variable is None:
        return "-", "not needed"
    return variable, "set" if os.environ.get(variable) else "not set"


@providers_app.command("list")
def list_providers(config_path: ConfigOption = None) -> None:
    """Configured providers: kind, model, and whether their key variable is set."""
    config = _config(config_path)
    table = Table(title="providers")
    for column in ("name", "kind", "model / members", "base URL", "key variable", "key"):
        table.add_column(column)
    for name, settings in sorted(config.providers.items()):
        variable, status = _key_status(settings)
        model = ", ".join(settings.members) if settings.kind == "chain" else settings.model
        table.add_row(name, settings.kind, model, settings.base_url or "", variable, status)
    console.print(table)
    console.print(f"teacher: {config.teacher}", highlight=False)
    if not config.providers:
        console.print(
            "no [providers.NAME] tables in the config; any spec works directly, "
            "e.g. tuneloop ask openai:gpt-4o-mini 'hello'",
            highlight=False,
            markup=False,
        )


@providers_app.command("check")
def check_provider(
    name: Annotated[str, typer.Argument(help="A configured provider name or any provider spec.")],
    config_path: ConfigOption = None,
) -> None:
    """One small call: prints who answered, latency, tokens and cost (exit 2 on failure)."""
    config = _config(config_path)
    provider = _resolve(name, config)
    completion = provider.complete(
        [{"role": "user", "content": CHECK_PROMPT}], max_tokens=16, temperature=0.0
    )
    console.print(f"[green]ok[/green] {provider.name}", highlight=False)
    _report(completion, to=console)


def ask(
    spec: Annotated[str, typer.Argument(help="Provider spec or configured provider name.")],
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Require a JSON answer (fences and prose stripped).")
    ] = False,
    stream: Annotated[bool, typer.Option(help="Print the answer as it arrives.")] = False,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens in the answer.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Ask one question: the answer on stdout; model, tokens, cost and trail on stderr."""
    from tuneloop.providers import RequestOptions
    from tuneloop.providers.output import checked, json_check

    config = _config(config_path)
    provider = _resolve(spec, config)
    if json_output:
        provider = checked(provider, json_check())
    text = sys.stdin.read() if prompt == "-" else prompt
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    options = RequestOptions(max_tokens=max_tokens, temperature=temperature)
    completion: Completion | None = None
    if stream:
        for chunk in provider.stream(messages, options=options):
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            completion = chunk.completion or completion
        sys.stdout.write("\n")
    else:
        completion = provider.complete(messages, options=options)
        sys.stdout.write(completion.text + "\n")
    sys.stdout.flush()
    if completion is not None:
        _report(completion, to=err_console)


def _report(completion: Completion, *, to: Console) -> None:
    """Who answered, tokens, cost, latency and (for chains and retries) the trail."""
    tokens = f"{completion.prompt_tokens} in / {completion.completion_tokens} out tokens"
    if completion.tokens_estimated:
        tokens = f"~{tokens} (estimated)"
    cost = "cost unknown" if completion.cost_usd is None else f"${completion.cost_usd:.6f}"
    to.print(
        f"model {completion.model} via {completion.provider} · {tokens} · {cost} · "
        f"{completion.latency_ms:.0f} ms · finish {completion.finish_reason or '?'}",
        highlight=False,
    )
    if completion.reasoning:
        to.print(f"reasoning: {completion.reasoning}", highlight=False)
    for attempt in completion.trail:
        to.print(f"  tried {attempt.describe()}", highlight=False)
