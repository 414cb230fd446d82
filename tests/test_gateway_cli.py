"""``tuneloop gateway``: key management, and refusing to listen beyond loopback without keys."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.config import load_config
from tuneloop.errors import ConfigError
from tuneloop.gateway import check_bind, create_key, list_keys
from tuneloop.gateway.keys import find_scope, hash_key, load_scopes
from tuneloop.store import Store


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(f'workspace = "{(tmp_path / "ws").as_posix()}"\n', encoding="utf-8")
    return path


def test_keys_create_list_revoke_store_only_a_hash(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "gateway",
            "keys",
            "create",
            "mobile app",
            "--tenant",
            "acme",
            "--task",
            "ui-layout",
            "-c",
            str(config_path),
        ],
    )
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    assert key.startswith("tlk_") and len(key) > 40
    store = Store(load_config(config_path).store_url)
    [record] = list_keys(store)
    assert record.key_hash == hash_key(key) and key not in record.key_hash
    assert (record.tenants, record.tasks) == (["acme"], ["ui-layout"])
    scope = find_scope(load_scopes(store), key)
    assert scope is not None and scope.allows_task("ui-layout") and not scope.allows_task("x")
    assert find_scope(load_scopes(store), key + "x") is None
    listed = runner.invoke(app, ["gateway", "keys", "list", "-c", str(config_path)])
    assert "mobile app" in listed.output and key not in listed.output
    revoked = runner.invoke(
        app, ["gateway", "keys", "revoke", str(record.id), "-c", str(config_path)]
    )
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert list_keys(store) == [] and load_scopes(store) == {}
    missing = runner.invoke(app, ["gateway", "keys", "revoke", "99", "-c", str(config_path)])
    assert missing.exit_code != 0
    store.close()


def test_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    result = CliRunner().invoke(
        app, ["gateway", "--host", "0.0.0.0", "--port", "1", "-c", str(config_path)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "no API key exists" in str(result.exception)
    config = load_config(config_path, overrides={"gateway.host": "127.0.0.1"})
    store = Store(config.store_url)
    check_bind(config, store)  # loopback needs no key
    _, _key = create_key(store, "ops")
    check_bind(load_config(config_path, overrides={"gateway.host": "0.0.0.0"}), store)
    store.close()
