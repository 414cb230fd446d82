"""The ``tuneloop`` typer app. Each command group lives in its own module with ``register(app)``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneloop.cli.common import console, err_console
from tuneloop.errors import Interrupted, TuneloopError

app = typer.Typer(
    name="tuneloop",
    help="Turn your LLM app's traffic and feedback into a smaller model of your own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order their groups appear in --help. Each defines register(app).
COMMAND_MODULES = [
    "capture",
    "synth",
    "curate",
    "train",
    "registry",
    "evaluate",
    "providers",
    "gateway",
    "jobs",
    "demo",
]


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path(
        "tuneloop.toml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented tuneloop.toml with every key at its default, and create the store."""
    from tuneloop.cli.common import load_settings
    from tuneloop.config import render_default_config
    from tuneloop.store import Store

    if path.is_dir():
        raise TuneloopError(
            f"{path} is a folder; give the config file to write, for example "
            f"{path / 'tuneloop.toml'}"
        )
    if not path.parent.is_dir():
        raise TuneloopError(
            f"cannot write {path}: the folder {path.parent} does not exist (create it first)"
        )
    if path.exists() and not force:
        raise TuneloopError(f"{path} already exists (use --force to overwrite)")
    try:
        path.write_text(render_default_config(), encoding="utf-8")
    except OSError as exc:
        raise TuneloopError(f"cannot write {path}: {exc.strerror or exc}") from None
    console.print(f"wrote [bold]{path}[/bold]")
    store = Store(load_settings(path).store_url)
    console.print(f"store ready at {store.display_url}", highlight=False)
    store.close()


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tuneloop.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tuneloop.cli.{name}":
                continue  # a command group not built yet
            raise
        module.register(app)


@app.callback()
def _root() -> None:
    """Turn your LLM app's traffic and feedback into a smaller model of your own."""


_register_commands()


def main() -> None:
    """Console entry point: user errors print one clear message, never a traceback."""
    try:
        app()
    except Interrupted as exc:
        err_console.print(f"[bold red]stopped:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(128 + exc.signal_number if exc.signal_number else 1)
    except TuneloopError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
