"""What every command shares: the console, the config/store options, and error reporting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneloop.config import Config, load_config
from tuneloop.store import Store

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (default: $TUNELOOP_CONFIG or ./tuneloop.toml)."
    ),
]


def load(config_path: Path | None, **overrides: object) -> tuple[Config, Store]:
    """Load the config (with dotted-key overrides whose value is not None) and open the store."""
    config = load_config(
        config_path, overrides={key: value for key, value in overrides.items() if value is not None}
    )
    return config, Store(config.store_url)
