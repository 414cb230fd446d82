"""Command options generated from the config models: every key is an option, none by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel
from typer.main import get_command
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.cli.options import config_options, parse_set_values
from tuneloop.config import CurateConfig, TrainConfig


def _options(*path: str) -> set[str]:
    command: Any = get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize(
    ("path", "model"), [(("train",), TrainConfig), (("dataset", "build"), CurateConfig)]
)
def test_every_config_key_is_an_option(path: tuple[str, ...], model: type) -> None:
    options = _options(*path)

    def names(model: type, prefix: str = "") -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found.extend(names(field.annotation, f"{prefix}{name}_"))
            else:
                found.append(prefix + name)
        return found

    for name in names(model):
        assert "--" + name.replace("_", "-") in options, name
    assert "--set" in options


def _probe() -> tuple[typer.Typer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    probe = typer.Typer()

    @probe.command()
    @config_options("train", TrainConfig)
    def run(label: str = "x", *, overrides: dict[str, Any]) -> None:
        seen.append({"label": label, **overrides})

    return probe, seen


def test_given_options_become_dotted_overrides() -> None:
    probe, seen = _probe()
    result = CliRunner().invoke(
        probe,
        [
            "--epochs",
            "2",
            "--target-modules",
            "q_proj, v_proj",
            "--method",
            "full",
            "--set",
            "curate.min_reward=0.5",
            "--label",
            "y",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen == [
        {
            "label": "y",
            "curate.min_reward": "0.5",
            "train.epochs": 2,
            "train.target_modules": ["q_proj", "v_proj"],
            "train.method": "full",
        }
    ]


def test_no_options_no_overrides() -> None:
    probe, seen = _probe()
    assert CliRunner().invoke(probe, []).exit_code == 0
    assert seen == [{"label": "x"}]


def test_malformed_set_is_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        parse_set_values(["train.epochs"])


def test_bad_value_is_reported_with_its_key(tmp_path: Path) -> None:
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'workspace = "{tmp_path.as_posix()}"\n')
    result = CliRunner().invoke(app, ["train", "--epochs", "0", "--config", str(config)])
    assert result.exit_code != 0
    assert "train.epochs = 0 (from command-line option)" in str(result.exception)
