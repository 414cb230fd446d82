"""The command line: fast start, init, and user errors as one clear line without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tuneloop.cli.app import app

TUNELOOP = [sys.executable, "-m", "tuneloop.cli.app"]


def test_help_lists_every_command_group() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "init",
        "log",
        "feedback",
        "stats",
        "dataset",
        "train",
        "eval",
        "models",
        "demo",
    ):
        assert command in result.output


def test_cli_import_loads_no_heavy_modules() -> None:
    code = (
        "import sys, tuneloop.cli.app; "
        "print(sorted(m for m in ('torch', 'transformers', 'sqlalchemy', 'peft') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_writes_a_loadable_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "tuneloop.toml"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    assert "[train]" in target.read_text()
    again = subprocess.run([*TUNELOOP, "init", str(target)], capture_output=True, text=True)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_config_error_is_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "tuneloop.toml"
    bad.write_text("[train]\nepochs = 0\n")
    result = subprocess.run(
        [*TUNELOOP, "stats", "--config", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "train.epochs = 0" in result.stderr
    assert "Traceback" not in result.stderr
