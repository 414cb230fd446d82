"""What every command shares: the console, the config/store options, and error reporting.

Config and store modules (pydantic, SQLAlchemy) load only when a command runs, so that
``tuneloop --help`` stays fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tuneloop.config import Config
    from tuneloop.store import Store

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (default: $TUNELOOP_CONFIG or ./tuneloop.toml)."
    ),
]


def load_settings(config_path: Path | None, overrides: dict[str, object] | None = None) -> Config:
    """Load the config, printing its warnings (a stray TUNELOOP_* variable) on stderr."""
    from tuneloop.config import ConfigWarning, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        config = load_config(config_path, overrides=overrides)
    for warning in caught:
        if issubclass(warning.category, ConfigWarning):
            err_console.print(
                f"[yellow]warning:[/yellow] {warning.message}", highlight=False, soft_wrap=True
            )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return config


def load(config_path: Path | None, **overrides: object) -> tuple[Config, Store]:
    """Load the config (with dotted-key overrides whose value is not None) and open the store."""
    from tuneloop.store import Store

    config = load_settings(
        config_path, {key: value for key, value in overrides.items() if value is not None}
    )
    return config, Store(config.store_url)


def load_read_only(config_path: Path | None) -> tuple[Config, Store]:
    """Load the config and open an existing store for a command that only looks: a missing
    store is an error ("no store here"), never a new empty one."""
    from tuneloop.store import Store

    config = load_settings(config_path)
    return config, Store(config.store_url, read_only=True)
