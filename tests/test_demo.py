"""End to end: the shortened demo runs the whole loop and reports every model's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneloop.assets import BUILTIN_MODELS
from tuneloop.cli.app import app
from tuneloop.registry import list_versions
from tuneloop.store import EvalRun, Interaction, Job, Store

pytestmark = pytest.mark.skipif(
    not (BUILTIN_MODELS["builtin:tiny"] / "model.safetensors").exists(),
    reason="base model not built (make base-model)",
)


def test_quick_demo_json_summary(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--json", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["models"]) == {"base", "v1", "teacher"}
    assert summary["smoke"] is True
    assert summary["evaluation"]["eval_answers_in_training"] == 0.0
    for label in ("base", "v1"):
        row = summary["models"][label]
        assert set(row["wording"]) == {"seen", "new"}
        assert row["wording"]["seen"]["n"] == row["wording"]["new"]["n"] == 2
        assert row["n"] == 4 and row["errors"] == 0
        assert row["latency_ms"] > 0 and row["tokens_per_s"] > 0
    assert summary["workspace"] == str(workspace.resolve())
    assert summary["capture"]["not_stored_opt_out"] > 0
    assert Path(summary["plots"]["comparison"]).is_file()

    store = Store(f"sqlite:///{workspace / 'tuneloop.db'}")
    [version] = list_versions(store, "ui-layout")
    assert version.name == "v1" and version.stage == "candidate"
    assert Path(version.artifact_path, "model.safetensors").is_file()
    assert (Path(version.artifact_path).parent / "loss.png").is_file()
    assert (
        version.metrics["eval"]["right_screen_rate"] == summary["models"]["v1"]["right_screen_rate"]
    )
    with store.session() as session:
        job = session.query(Job).one()
        assert job.status == "succeeded"
        assert any(event.data.get("loss") for event in job.events)
        assert {run.label for run in session.query(EvalRun)} == {"base", "v1", "teacher"}
        assert session.query(Interaction).filter_by(tenant="umbrella").count() == 0

    # The workspace is a normal one: other commands work on it.
    stats = CliRunner().invoke(
        app, ["stats", "--json", "--config", str(workspace / "tuneloop.toml")]
    )
    assert stats.exit_code == 0, stats.output


def test_demo_refuses_a_folder_that_is_not_a_demo_workspace(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["demo", "--quick", "--workspace", str(tmp_path)])
    assert result.exit_code != 0
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_quick_demo_says_it_is_a_smoke_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--quick", "--workspace", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "smoke run" in result.output
    assert "new" in result.output and "seen" in result.output


@pytest.mark.slow
def test_full_demo_student_learns_the_requests(tmp_path: Path) -> None:
    """What the demo claims: v1 beats the base on valid JSON and on the requested screen, on
    requests whose answers training never contained, in seen and in new wording."""
    workspace = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--json", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["smoke"] is False
    assert summary["evaluation"]["eval_answers_in_training"] == 0.0
    base, student = summary["models"]["base"], summary["models"]["v1"]
    assert student["errors"] == 0
    for wording in ("seen", "new"):
        assert student["wording"][wording]["n"] >= 12
        assert (
            student["wording"][wording]["valid_json_rate"]
            > base["wording"][wording]["valid_json_rate"]
        )
    assert student["right_screen_rate"] > base["right_screen_rate"]
