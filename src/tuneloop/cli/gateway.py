"""``tuneloop gateway``: serve the OpenAI-compatible gateway; ``tuneloop gateway keys ...``:
manage its client API keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tuneloop.cli.common import ConfigOption, console, load
from tuneloop.cli.options import config_options
from tuneloop.config import GatewayConfig


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Serve the OpenAI-compatible gateway (routing, fallback, logging) and its keys.",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    group.callback()(config_options("gateway", GatewayConfig)(gateway))
    keys = typer.Typer(help="Client API keys of the gateway (stored hashed).", no_args_is_help=True)
    keys.command("create")(create)
    keys.command("list")(list_)
    keys.command("revoke")(revoke)
    group.add_typer(keys, name="keys")
    app.add_typer(group, name="gateway")


def gateway(
    ctx: typer.Context,
    config_path: ConfigOption = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Serve POST /v1/chat/completions and friends until SIGTERM (the call log drains first)."""
    if ctx.invoked_subcommand is not None:
        if overrides:
            raise typer.BadParameter(
                "gateway options go before no subcommand: `tuneloop gateway --port 8300`"
            )
        ctx.obj = config_path
        return
    from tuneloop.gateway import check_bind, serve

    config, store = load(config_path, **overrides)
    try:
        check_bind(config, store)
        where = store.display_url
    finally:
        store.close()
    settings = config.gateway
    plural = "s" if settings.workers > 1 else ""
    console.print(
        f"gateway on [bold]http://{settings.host}:{settings.port}/v1[/bold] "
        f"({settings.workers} worker{plural}), store {where}"
    )
    serve(config)


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for (an app, a team).")],
    tenant: Annotated[
        list[str] | None, typer.Option(help="Tenant the key may act for (repeatable; none: any).")
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Task the key may call (repeatable; none: any).")
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from tuneloop.gateway import create_key

    _, store = load(config_path or ctx.obj)
    record, key = create_key(store, name, tenants=tenant or [], tasks=task or [])
    console.print(f"key {record.id} ({record.name}) created; it is shown only now:")
    console.print(key, highlight=False, soft_wrap=True)


def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """List keys: id, name, prefix, scope, dates (never the key)."""
    from rich.table import Table

    from tuneloop.gateway import list_keys

    _, store = load(config_path or ctx.obj)
    table = Table("id", "name", "prefix", "tenants", "tasks", "created", "revoked")
    for record in list_keys(store, include_revoked=all_):
        table.add_row(
            str(record.id),
            record.name,
            record.prefix + "…",
            ", ".join(record.tenants) or "any",
            ", ".join(record.tasks) or "any",
            f"{record.created_at:%Y-%m-%d %H:%M}",
            f"{record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "",
        )
    console.print(table)


def revoke(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).")],
    config_path: ConfigOption = None,
) -> None:
    """Revoke a key; running gateways refuse it within gateway.reload_s seconds."""
    from tuneloop.gateway import revoke_key

    _, store = load(config_path or ctx.obj)
    record = revoke_key(store, key_id)
    console.print(f"key {record.id} ({record.name}) revoked")
