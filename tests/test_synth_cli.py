"""``tuneloop synth run|status`` on a pipeline of Python callables (no network)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tuneloop.cli.app import app

PIPELINE = """
name = "docs"
task = "docs"
n = 4
vars = { product = ["a bike lock", "a tent"] }

[[steps]]
name = "scenario"
provider = "callable:synth_helpers:scenario"
prompt = "Scenario {{ index }} (sample {{ sample }}) for {{ product }}"
fan_out = 2
parser = "json_schema"
schema = { type = "object", required = ["title", "audience"] }

[[steps]]
name = "reply"
provider = "callable:synth_helpers:idea"
prompt = "Write to {{ scenario.audience }} about: {{ scenario.title }}"
gates = { min_words = 4, custom = ["synth_helpers:long_enough"] }
"""


def test_run_then_status(tmp_path: Path) -> None:
    (tmp_path / "docs.toml").write_text(PIPELINE)
    config = tmp_path / "tuneloop.toml"
    config.write_text(f'workspace = "{tmp_path / "ws"}"\n')
    runner = CliRunner()

    result = runner.invoke(
        app, ["synth", "run", str(tmp_path / "docs.toml"), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "4 examples" in result.output
    assert "gate:synth_helpers:long_enough 4" in result.output
    lines = (tmp_path / "ws" / "synth" / "docs" / "docs.jsonl").read_text().splitlines()
    users = [json.loads(line)["messages"][0]["content"] for line in lines]
    assert all("sample 0" in user and "new customers" in user for user in users)

    status = runner.invoke(app, ["synth", "status", "--config", str(config)])
    assert status.exit_code == 0
    assert "docs" in status.output and "finished" in status.output
