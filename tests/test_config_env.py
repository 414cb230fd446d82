"""Failures that are loud and safe: stray TUNELOOP_* variables warn, list values from the
environment take JSON or commas, and a password never sits in the config file or in a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.config import ConfigWarning, load_config
from tuneloop.errors import ConfigError, StoreError
from tuneloop.store import Store

PASSWORD = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("TUNELOOP_HOME", "TUNELOOP_WORKSPACE"),
        ("TUNELOOP_TRAIN__EPOCS", "TUNELOOP_TRAIN__EPOCHS"),
        ("TUNELOOP_CAPTURE__OPTED_OUT", "TUNELOOP_CAPTURE__OPTED_OUT_TENANTS"),
    ],
)
def test_a_stray_variable_warns_with_the_closest_key(name: str, closest: str) -> None:
    with pytest.warns(
        ConfigWarning,
        match=f"{name} is not a tuneloop config key; the closest is {closest}; it is ignored",
    ):
        config = load_config(None, environ={name: "7", "TUNELOOP_TRAIN__EPOCHS": "5"})
    assert config.train.epochs == 5


def test_the_cli_prints_the_warning_and_goes_on(tmp_path: Path) -> None:
    config = tmp_path / "tuneloop.toml"
    assert CliRunner().invoke(app, ["init", str(config)]).exit_code == 0
    result = CliRunner().invoke(
        app, ["stats", "--json", "-c", str(config)], env={"TUNELOOP_HOME": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "warning: environment variable TUNELOOP_HOME is not a tuneloop config key" in (
        result.stderr.replace("\n", "")
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["a", "b c"]', ["a", "b c"]),
        ("a, b c ,", ["a", "b c"]),
        ("solo", ["solo"]),
        ("", []),
    ],
)
def test_list_values_from_the_environment_take_json_or_commas(
    raw: str, expected: list[str]
) -> None:
    config = load_config(None, environ={"TUNELOOP_CAPTURE__OPTED_OUT_TENANTS": raw})
    assert config.capture.opted_out_tenants == expected


def test_a_list_error_says_how_the_value_was_read() -> None:
    name = "TUNELOOP_CAPTURE__OPTED_OUT_TENANTS"
    with pytest.raises(ConfigError, match=r"read as a JSON list\)\): Input should be a valid str"):
        load_config(None, environ={name: "[1, 2]"})
    with pytest.raises(
        ConfigError,
        match=rf"{name} starts with '\[' but is not a JSON list .*"
        r"or a comma-separated list such as a,b",
    ):
        load_config(None, environ={name: "[a, b"})


def test_a_password_in_the_store_url_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tuneloop.toml"
    path.write_text(
        f'[store]\nurl = "postgresql+psycopg://app:{PASSWORD}@db/tl"\n', encoding="utf-8"
    )
    with pytest.raises(
        ConfigError, match="store.url contains a password.*TUNELOOP_STORE__URL"
    ) as caught:
        load_config(path, environ={})
    assert PASSWORD not in str(caught.value)
    url = f"postgresql+psycopg://app:{PASSWORD}@db/tl"
    config = load_config(None, environ={"TUNELOOP_STORE__URL": url})  # the place for it
    assert config.store_url == url


def test_messages_never_show_a_url_password() -> None:
    with pytest.raises(ConfigError, match="mysql://app:\\*\\*\\*@db") as caught:
        load_config(None, environ={"TUNELOOP_STORE__URL": f"mysql://app:{PASSWORD}@db/x"})
    assert PASSWORD not in str(caught.value)
    with pytest.raises(StoreError) as refused:
        Store(f"oracle://app:{PASSWORD}@db/x")
    assert PASSWORD not in str(refused.value)
