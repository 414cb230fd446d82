"""Reading gateway traffic: shadow pairs (candidate vs served answer for the same request) and
user outcomes per version, on SQLite and PostgreSQL, through the Python API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.capture.client import Tuneloop
from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.errors import InputError
from tuneloop.evaluate import (
    PairwiseJudge,
    RunningMean,
    analyse_shadow,
    bootstrap_counts,
    bootstrap_mean,
    bootstrap_rate,
    json_equal,
    outcomes_by_version,
    shadow_pairs,
)
from tuneloop.providers import CallableProvider
from tuneloop.registry import register_version
from tuneloop.store import Store

TASK = "ui-layout"


def layout(name: str, by: str = "x") -> str:
    return json.dumps({"type": "FRAME", "name": name, "by": by})


def served(index: int, text: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"call{index}",
        "messages": [{"role": "user", "content": f"screen {index}"}],
        "response": text,
        "task": TASK,
        "source": "gateway",
        "latency_ms": 100.0,
        "cost_usd": 0.002,
        "metadata": {
            "category": "auth" if index % 2 else "other",
            "gateway": {"route": "production", "served_by": f"{TASK}@v{version}"},
        },
        **extra,
    }


def shadowed(index: int, text: str, version: int = 2, check: str = "ok") -> dict[str, Any]:
    return {
        "id": f"call{index}-shadow",
        "messages": [{"role": "user", "content": f"screen {index}"}],
        "response": text,
        "task": TASK,
        "source": "shadow",
        "session_id": f"shadow:call{index}",
        "latency_ms": 60.0,
        "cost_usd": 0.0,
        "metadata": {
            "gateway": {
                "route": "shadow",
                "served_by": f"{TASK}@v{version}",
                "shadow_of": f"call{index}",
                "check": check,
            }
        },
    }


@pytest.fixture
def traffic(store_url: str, tmp_path: Path) -> Iterator[tuple[Store, Tuneloop, list[str]]]:
    """Ten served calls; v2 answered each in shadow: the same JSON for 0–5 (6–7 with other key
    order and spacing), a different one for 8, prose for 9. v3 shadowed call 10 only."""
    config = Config.model_validate({"workspace": str(tmp_path / "ws"), "store": {"url": store_url}})
    store = Store(config.store_url)
    for _ in range(3):
        register_version(
            store, task=TASK, base_model="builtin:tiny", artifact_path=None, config={"serve": "x:y"}
        )
    client = Tuneloop(config, store)
    records = [served(i, layout(f"s{i}")) for i in range(10)]
    records.append(served(10, layout("unshadowed")))
    shadows = [shadowed(i, layout(f"s{i}")) for i in range(6)]
    shadows += [
        shadowed(i, json.dumps({"by": "x", "name": f"s{i}", "type": "FRAME"}, indent=1))
        for i in (6, 7)
    ]
    shadows += [shadowed(8, layout("wrong")), shadowed(9, "Sure, here it is", check="not_json")]
    shadows.append(shadowed(10, layout("unshadowed"), version=3))
    ids = client.log_many(records + shadows)
    yield store, client, [i for i in ids if i is not None]
    store.close()


def test_shadow_pairs_are_read_by_sql_join_with_filters(
    traffic: tuple[Store, Tuneloop, list[str]],
) -> None:
    store, _client, _ids = traffic
    pairs = list(shadow_pairs(store, TASK, f"{TASK}@v2", batch_rows=3))
    assert [p.call_id for p in pairs] == [f"call{i}" for i in range(10)]
    assert pairs[9].candidate == "Sure, here it is" and pairs[9].candidate_check == "not_json"
    assert pairs[0].metadata == {"category": "other"}  # the request's metadata, gateway info out
    assert (pairs[0].primary_latency_ms, pairs[0].candidate_latency_ms) == (100.0, 60.0)
    assert [p.call_id for p in shadow_pairs(store, TASK, f"{TASK}@v3")] == ["call10"]
    assert list(shadow_pairs(store, TASK, f"{TASK}@v2", served_by=f"{TASK}@v9")) == []
    assert list(shadow_pairs(store, "other-task", f"{TASK}@v2")) == []


def test_shadow_analysis_agreement_reference_metrics_judge_and_deltas(
    traffic: tuple[Store, Tuneloop, list[str]],
) -> None:
    store, client, ids = traffic
    # the user corrected two served answers: call 8's correction is what v2 said
    client.feedback(ids[8], "correction", edited=layout("wrong"))
    client.feedback(ids[3], "correction", edited=layout("s3", by="user"))

    def prefers_the_candidate(messages: list[dict[str, Any]]) -> str:
        text = messages[-1]["content"]
        first = text.split("[ANSWER A]")[1]
        return json.dumps({"winner": "B" if '"wrong"' not in first else "A"})

    def by_length(output: str, reference: str | None, example: dict[str, Any]) -> float:
        assert example["metadata"]["category"] in ("auth", "other")
        return float(len(output) < 80)

    report = analyse_shadow(
        store,
        TASK,
        "v2",
        metrics={"short": by_length},
        judge=PairwiseJudge(CallableProvider(prefers_the_candidate, name="judge")),
        judge_sample=4,
        weak_below=30,
    )
    assert report.candidate == f"{TASK}@v2" and report.pairs == 10
    assert report.served_by == {f"{TASK}@v1": 10}
    assert report.agreement["exact"].mean == 0.6  # 0–5
    assert report.agreement["json_equal"].mean == 0.8  # 0–7: key order and spacing ignored
    assert report.checks_passed is not None and report.checks_passed.mean == 0.9
    assert report.scores["valid_json"]["candidate"]["mean"] == 0.9
    assert report.with_reference == 2
    assert report.scores["exact_match"]["served"]["mean"] == 0.0
    assert report.scores["exact_match"]["candidate"]["mean"] == 0.5  # right on call 8
    assert report.scores["short"]["served"]["n"] == 2
    assert report.scores["latency_ms"]["delta"]["mean"] == -40.0
    assert report.cost["delta"]["mean"] == -0.002
    judge = report.judge
    assert judge is not None and judge["candidate_preference"]["n"] == 4
    assert judge["candidate_wins"] + judge["served_wins"] + judge["ties"] == 4
    assert any(note.startswith("weak evidence: 10 pairs") for note in report.notes)
    json.dumps(report.to_dict())  # the JSON form holds only plain values


def test_no_pairs_is_an_insufficient_data_line_and_unknown_versions_are_errors(
    traffic: tuple[Store, Tuneloop, list[str]],
) -> None:
    store, _client, _ids = traffic
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(days=1)
    report = analyse_shadow(store, TASK, "v2", since=later)
    assert report.pairs == 0 and report.notes[0].startswith("insufficient data")
    assert report.agreement["exact"].mean is None
    with pytest.raises(InputError, match="v7"):
        analyse_shadow(store, TASK, "v7")
    with pytest.raises(InputError, match="not a version of task"):
        analyse_shadow(store, TASK, "other@v2")


def test_outcomes_per_version_are_aggregated_in_sql(
    traffic: tuple[Store, Tuneloop, list[str]],
) -> None:
    store, client, ids = traffic
    more = client.log_many(
        [served(20 + i, layout("n"), version=2) for i in range(4)]
        + [{**served(30, layout("app")), "metadata": {}, "model": "app-model", "id": "app30"}]
    )
    client.feedback(ids[0], "thumbs_up")
    client.feedback(ids[1], "thumbs_down")
    client.feedback(ids[1], "thumbs_up")  # the latest verdict counts
    client.feedback(ids[2], "thumbs_up")
    client.feedback(ids[2], "thumbs_down")
    client.feedback(ids[3], "correction", edited=layout("s3", by="user"))
    client.feedback(ids[4], "saved")
    client.feedback(ids[5], "regenerated")
    client.feedback(ids[6], "saved")
    client.feedback(ids[6], "saved_with_edits", edited=layout("s6", by="user"))
    assert more[0] is not None
    client.feedback(more[0], "thumbs_up")
    client.feedback(more[1], "saved")
    report = outcomes_by_version(store, TASK, weak_below=5)
    rows = {row.version: row for row in report.versions}
    assert set(rows) == {f"{TASK}@v1", f"{TASK}@v2", "app-model"}  # shadow answers left out
    v1 = rows[f"{TASK}@v1"]
    assert (v1.calls, v1.rated) == (11, 7)
    assert (v1.thumbs_up.n, v1.thumbs_up.mean) == (3, round(2 / 3, 4))
    assert (v1.corrections.n, v1.corrections.mean) == (7, round(2 / 7, 4))
    assert v1.acceptance.mean == round(3 / 7, 4)  # calls 0, 1, 4
    assert v1.reward.n == 7 and v1.reward.low is not None and v1.reward.low <= v1.reward.mean
    v2 = rows[f"{TASK}@v2"]
    assert (v2.calls, v2.rated, v2.acceptance.mean) == (4, 2, 1.0)
    assert rows["app-model"].rated == 0 and rows["app-model"].reward.mean is None
    assert report.versions[0].version == f"{TASK}@v1"  # most calls first
    assert any("weak evidence for" in note and "v2" in note for note in report.notes)


def test_interval_helpers_agree_with_the_plain_bootstrap() -> None:
    values = [1.0] * 30 + [0.0] * 10
    plain = bootstrap_mean(values)
    counted = bootstrap_counts([0.0, 1.0], [10, 30])
    assert counted.mean == plain.mean == 0.75 and counted.n == 40
    assert abs((counted.low or 0) - (plain.low or 0)) < 0.05
    assert bootstrap_rate(30, 40).mean == 0.75 and bootstrap_rate(0, 0).n == 0
    running = RunningMean(keep=10)
    for value in values:
        running.add(value)
    normal = running.estimate()  # past `keep`: the normal interval from running moments
    assert normal.mean == 0.75 and normal.n == 40
    assert abs((normal.low or 0) - (plain.low or 0)) < 0.05
    assert json_equal('{"a": 1, "b": [1, 2]}', '```json\n{"b":[1,2],"a":1}\n```') is True
    assert json_equal('{"a": 1}', "prose") is False and json_equal("one", "two") is None


def test_cli_shadow_and_outcomes(tmp_path: Path) -> None:
    config_path = tmp_path / "tuneloop.toml"
    config_path.write_text(f'workspace = "{(tmp_path / "ws").as_posix()}"\ntask = "{TASK}"\n')
    config = Config.model_validate({"workspace": str(tmp_path / "ws")})
    store = Store(config.store_url)
    for _ in range(2):
        register_version(
            store, task=TASK, base_model="builtin:tiny", artifact_path=None, config={"serve": "x:y"}
        )
    client = Tuneloop(config, store)
    ids = client.log_many(
        [served(i, layout(f"s{i}")) for i in range(3)]
        + [shadowed(i, layout(f"s{i}")) for i in range(3)]
    )
    assert ids[0] is not None
    client.feedback(ids[0], "thumbs_up")
    store.close()
    runner = CliRunner()
    shown = runner.invoke(
        app, ["eval", "shadow", "--candidate", "v2", "--weak-below", "5", "-c", str(config_path)]
    )
    assert shown.exit_code == 0, shown.output
    assert "same JSON" in shown.output and "weak evidence: 3 pairs" in shown.output
    as_json = runner.invoke(
        app,
        ["eval", "shadow", "--task", TASK, "--candidate", "v2", "--json", "-c", str(config_path)],
    )
    assert json.loads(as_json.output)["pairs"] == 3
    outcomes = runner.invoke(app, ["eval", "outcomes", "--json", "-c", str(config_path)])
    assert outcomes.exit_code == 0, outcomes.output
    [row] = json.loads(outcomes.output)["versions"]
    assert row["thumbs_up_rate"]["mean"] == 1.0 and row["calls"] == 3
    table = runner.invoke(
        app, ["eval", "outcomes", "--since", "2020-01-01", "-c", str(config_path)]
    )
    assert table.exit_code == 0 and "thumbs up" in table.output
    bad = runner.invoke(app, ["eval", "outcomes", "--since", "last week", "-c", str(config_path)])
    assert isinstance(bad.exception, InputError) and "--since" in str(bad.exception)


def test_shadow_analysis_of_real_gateway_traffic(tmp_path: Path) -> None:
    """The pairs the gateway logs, read back as pairs: nothing lost, nothing mismatched."""
    import openai
    from gateway_fakes import Running
    from test_gateway_app import add_version, make_config, wait_rows

    from tuneloop.gateway import create_app

    config = make_config(tmp_path)
    store = Store(config.store_url)
    add_version(store, "callable:gateway_fakes:student", "production")
    add_version(store, "callable:gateway_fakes:shadow", "shadow")
    with Running(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        for number in range(6):
            client.chat.completions.create(
                model=TASK, messages=[{"role": "user", "content": f"card {number}"}]
            )
        wait_rows(store, 6, source="shadow")
    report = analyse_shadow(store, TASK, "v2")
    assert report.pairs == 6 and report.served_by == {f"{TASK}@v1": 6}
    assert report.agreement["json_equal"].mean == 0.0  # "by": "student" vs "by": "shadow"
    assert report.scores["valid_json"]["delta"]["mean"] == 0.0
    assert report.checks_passed is not None and report.checks_passed.mean == 1.0
    store.close()
