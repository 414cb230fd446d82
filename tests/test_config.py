"""The config: defaults, file, env overrides, and errors that name key, value and origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.config import Config, load_config, render_default_config
from tuneloop.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.train.lora_r == 8
    assert config.workspace == tmp_path / ".tuneloop"
    assert config.store_url == f"sqlite:///{tmp_path / '.tuneloop' / 'tuneloop.db'}"


def test_file_values_and_relative_workspace(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", 'workspace = "ws"\n[train]\nepochs = 7\n')
    config = load_config(path, environ={})
    assert config.train.epochs == 7
    assert config.workspace == tmp_path / "ws"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", "[train]\nepochs = 7\n")
    config = load_config(
        path,
        environ={
            "TUNELOOP_TRAIN__EPOCHS": "9",
            "TUNELOOP_CAPTURE__OPTED_OUT_TENANTS": '["a", "b"]',
            "TUNELOOP_STORE__URL": "postgresql+psycopg://u@h/db",
        },
    )
    assert config.train.epochs == 9
    assert config.capture.opted_out_tenants == ["a", "b"]
    assert config.store_url == "postgresql+psycopg://u@h/db"


def test_bad_value_names_key_value_origin_and_rule(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", "[train]\nlora_r = 0\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert "train.lora_r = 0" in message
    assert str(path) in message
    assert "greater than or equal to 1" in message


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TUNELOOP_TRAIN__EPOCHS") as error:
        load_config(None, environ={"TUNELOOP_TRAIN__EPOCHS": "many"})
    assert "'many'" in str(error.value)


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", "[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match="train.epoch .*unknown key.*epochs"):
        load_config(path, environ={})


def test_literal_choices_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", '[train]\ndevice = "tpu"\n')
    with pytest.raises(ConfigError, match="'auto', 'cpu', 'cuda' or 'mps'"):
        load_config(path, environ={})


def test_secrets_in_the_file_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", '[store]\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match="store.password looks like a secret"):
        load_config(path, environ={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "tl.toml", "[train\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path, environ={})


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_unsupported_store_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="store.url"):
        load_config(None, environ={"TUNELOOP_STORE__URL": "mysql://x"})


def test_rendered_default_config_round_trips(tmp_path: Path) -> None:
    text = render_default_config()
    assert "# Reward in [-1, 1]" in text
    path = write(tmp_path / "tuneloop.toml", text)
    loaded = load_config(path, environ={})
    expected = Config().model_dump(exclude={"workspace"})
    assert loaded.model_dump(exclude={"workspace"}) == expected
