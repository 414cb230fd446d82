"""Opt-out and forget really delete: rows, feedback, eval results and exported dataset files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.curate import build_dataset, load_split, resolve_dataset
from tuneloop.errors import InputError
from tuneloop.store import (
    Dataset,
    EvalResult,
    EvalRun,
    Feedback,
    Interaction,
    ModelVersion,
    OptOut,
)

ConfigFactory = Callable[..., Config]
SECRET = "ACME-CONFIDENTIAL"
N = 6  # calls per tenant
ANSWER = '{"type": "FRAME", "name": "%s", "children": []}'


def _count(client: Tuneloop, model: type) -> int:
    with client.store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _files_with(root: Path, text: str) -> list[str]:
    return sorted(
        str(path)
        for path in root.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    )


@pytest.fixture
def world(config_factory: ConfigFactory) -> tuple[Tuneloop, Dataset]:
    """Two tenants' calls with feedback, a dataset built from them, an eval run, models."""
    config = config_factory(task="ui")
    client = Tuneloop(config)
    for i in range(N):
        for tenant, text in (("acme", f"{SECRET} screen {i}"), ("other", f"public screen {i}")):
            interaction_id = client.log(
                [{"role": "user", "content": text}], ANSWER % text, tenant=tenant
            )
            client.thumbs_up(interaction_id)
    dataset = build_dataset(client.store, config, task="ui")
    root = Path(dataset.path)
    (root / "train.chatml.jsonl").write_bytes((root / "train.jsonl").read_bytes())
    pairs = [json.loads(line)["messages"] for line in (root / "train.jsonl").open()]
    (root / "pairs_train.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "input": {"messages": m[:-1]},
                    "preferred_output": [m[-1]],
                    "non_preferred_output": [{"role": "assistant", "content": "{}"}],
                }
            )
            + "\n"
            for m in pairs
        ),
        encoding="utf-8",
    )
    (root / "preview.md").write_text("mixed content " + SECRET, encoding="utf-8")
    with client.store.session() as session:
        rows = session.scalars(select(Interaction)).all()
        session.add(
            EvalRun(
                task="ui",
                label="v1",
                provider="x",
                dataset_id=dataset.id,
                results=[
                    EvalResult(
                        interaction_id=row.id,
                        prompt=row.messages,
                        reference=row.response,
                        output="{}",
                    )
                    for row in rows
                ],
            )
        )
        trained = ModelVersion(task="ui", version=1, base_model="b", dataset_id=dataset.id)
        session.add(trained)
        session.flush()
        session.add(ModelVersion(task="ui", version=2, base_model="b", parent_id=trained.id))
        session.add(ModelVersion(task="other-task", version=1, base_model="b"))
    return client, dataset


def test_forget_removes_the_tenant_from_rows_and_files(
    world: tuple[Tuneloop, Dataset], tmp_path: Path
) -> None:
    client, dataset = world
    artifacts = client.config.artifacts_dir
    assert _files_with(artifacts, SECRET)  # the tenant's text is in the exported files
    before = (len(load_split(dataset, "train")), len(load_split(dataset, "eval")))
    report = client.forget("acme")
    assert (report.interactions, report.feedback, report.eval_results) == (N, N, N)
    assert report.datasets.datasets == [dataset.label] and report.datasets.examples == N
    assert report.datasets.models == ["ui@v1", "ui@v2"]  # trained on it, and continued from it
    assert report.datasets.removed_files == [str(Path(dataset.path) / "preview.md")]
    assert _files_with(artifacts, SECRET) == []
    with client.store.session() as session:
        assert session.scalar(select(func.count()).where(Interaction.tenant == "acme")) == 0
    purged = resolve_dataset(client.store, dataset.label, workspace=client.config.workspace)
    assert purged.purged_at is not None and purged.content_hash != dataset.content_hash
    train, held_out = load_split(purged, "train"), load_split(purged, "eval", with_ids=True)
    assert len(train) + len(held_out) == sum(before) - N == N
    assert purged.stats["counts"]["total"] == N and purged.stats["purged"]["train"] >= 1
    chatml = (Path(dataset.path) / "train.chatml.jsonl").read_text(encoding="utf-8")
    assert chatml == (Path(dataset.path) / "train.jsonl").read_text(encoding="utf-8")
    kept_pairs = (Path(dataset.path) / "pairs_train.jsonl").read_text(encoding="utf-8")
    assert len(kept_pairs.splitlines()) == len(train) and "public screen" in kept_pairs
    manifest = json.loads((Path(dataset.path) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["content_hash"] == purged.content_hash and manifest["purged_at"]
    assert _count(client, Feedback) == N and _count(client, EvalResult) == N
    # Forget is not opt-out: the tenant is collected again; running it again finds nothing.
    assert client.log([{"role": "user", "content": "new"}], "{}", tenant="acme") is not None
    again = client.forget("acme")
    assert (again.interactions, again.datasets.datasets) == (1, [])
    client.close()


def test_cli_opt_out_reports_what_it_touched(
    world: tuple[Tuneloop, Dataset], tmp_path: Path, store_url: str
) -> None:
    client, dataset = world
    config = tmp_path / "tuneloop.toml"
    config.write_text(
        f'workspace = "{client.config.workspace}"\n[store]\nurl = "{store_url}"\n', encoding="utf-8"
    )
    result = CliRunner().invoke(
        app, ["log", "opt-out", "acme", "--reason", "GDPR", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert f"deleted {N} interaction(s), {N} feedback event(s), {N} eval result(s)" in result.output
    assert f"dataset version(s) {dataset.label}" in result.output
    assert "trained on that data: ui@v1, ui@v2" in result.output
    assert SECRET not in result.output
    assert _files_with(client.config.artifacts_dir, SECRET) == []
    with client.store.session() as session:
        assert session.get(OptOut, "acme") is not None
    forget = CliRunner().invoke(app, ["log", "forget", "other", "-c", str(config)])
    assert forget.exit_code == 0 and f"deleted {N} interaction(s)" in forget.output
    client.close()


def test_feedback_on_a_call_that_was_not_stored_is_a_no_op(
    config_factory: ConfigFactory,
) -> None:
    with Tuneloop(config_factory(capture={"opted_out_tenants": ["gone"]})) as client:
        rid = client.log([{"role": "user", "content": "hi"}], "hello", tenant="gone")
        assert rid is None
        assert client.thumbs_up(rid) is None
        assert client.correct(rid, "better") is None
        with pytest.raises(InputError, match="unknown feedback kind"):
            client.feedback(rid, "meh")
        assert _count(client, Feedback) == 0
