"""Capture: rewards, aggregate rule, quality, opt-out, implicit signals, import, stats, CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import tuneloop
from tuneloop.capture.client import Tuneloop
from tuneloop.capture.importer import import_jsonl
from tuneloop.capture.quality import json_validity, quality_score, structurally_valid
from tuneloop.capture.rewards import (
    KINDS,
    RewardCalculator,
    aggregate_reward,
    changed_fraction,
    validation_reward,
)
from tuneloop.capture.stats import collection_stats
from tuneloop.cli.app import app
from tuneloop.config import CaptureConfig, Config
from tuneloop.errors import ConfigError, InputError
from tuneloop.jsontext import expects_json, extract_json, is_valid_json
from tuneloop.store import Feedback, Interaction, OptOut

PROMPT = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "hi"}]
ANSWER = '{"greeting": "hello"}'
ConfigFactory = Callable[..., Config]  # the conftest fixture
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def count(client: Tuneloop, model: type[Any] = Interaction) -> int:
    with client.store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- rewards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        ("thumbs_up", {}, 1.0),
        ("thumbs_down", {}, -1.0),
        ("saved", {}, 0.8),
        ("abandoned", {}, -0.5),
        ("regenerated", {}, -0.6),
        ("correction", {"edited": ANSWER}, 0.6),
        ("saved_with_edits", {"edited": "something else entirely"}, None),
        ("validation", {"score": 0.9}, 0.9),
    ],
)
def test_each_kind_has_its_reward_in_range(
    client: Tuneloop, kind: str, kwargs: dict[str, Any], expected: float | None
) -> None:
    interaction_id = client.log(PROMPT, ANSWER)
    assert interaction_id is not None
    reward = client.feedback(interaction_id, kind, **kwargs)
    assert -1.0 <= reward <= 1.0
    if expected is not None:
        assert reward == pytest.approx(expected)
    else:
        assert 0.2 <= reward < 0.6  # correction range of the guide


def test_every_kind_is_known_and_unknown_kinds_list_them(client: Tuneloop) -> None:
    assert set(KINDS) == {
        "thumbs_up",
        "thumbs_down",
        "correction",
        "saved",
        "saved_with_edits",
        "validation",
        "abandoned",
        "regenerated",
    }
    interaction_id = client.log(PROMPT, ANSWER)
    assert interaction_id is not None
    with pytest.raises(InputError, match=r"unknown feedback kind 'like'.*thumbs_up.*regenerated"):
        client.feedback(interaction_id, "like")
    assert count(client, Feedback) == 0


def test_correction_reward_falls_as_more_is_changed() -> None:
    calculator = RewardCalculator(CaptureConfig())
    original = "The quick brown fox jumps over the lazy dog near the river bank."
    edits = [original[:cut] + "#" * (len(original) - cut) for cut in range(len(original), -1, -8)]
    rewards = []
    for edited in edits:
        changed = changed_fraction(original, edited)
        rewards.append(calculator("correction", {"edited": edited, "changed": changed}, None))  # type: ignore[arg-type]
    assert rewards[0] == pytest.approx(0.6)  # nothing changed: correction_best
    assert rewards[-1] == pytest.approx(0.2)  # everything changed: correction_worst
    assert all(a >= b for a, b in itertools.pairwise(rewards))
    assert changed_fraction("abc", "abc") == 0.0
    assert changed_fraction("abc", "xyz") == 1.0
    long_text = "word " * 5000
    assert 0 < changed_fraction(long_text, long_text + "more") < 0.01  # word diff for long texts


@pytest.mark.parametrize(
    ("score", "reward"),
    [(0.0, -1.0), (0.3, -0.65), (0.6, -0.3), (0.7, 0.25), (0.8, 0.8), (0.9, 0.9), (1.0, 1.0)],
)
def test_validation_mapping_is_piecewise_linear(score: float, reward: float) -> None:
    assert validation_reward(score) == pytest.approx(reward)


def test_validation_ranges_follow_the_guide() -> None:
    scores = [i / 100 for i in range(101)]
    rewards = [validation_reward(s) for s in scores]
    assert all(a <= b for a, b in itertools.pairwise(rewards))
    assert all(0.8 <= validation_reward(s) <= 1.0 for s in scores if s >= 0.8)
    assert all(-1.0 <= validation_reward(s) <= -0.3 for s in scores if s < 0.6)


@pytest.mark.parametrize("score", [1.5, -0.1, "0.9", None, True])
def test_validation_needs_a_fraction(client: Tuneloop, score: Any) -> None:
    interaction_id = client.log(PROMPT, ANSWER)
    assert interaction_id is not None
    with pytest.raises(InputError, match=r"score in \[0, 1\]"):
        client.feedback(interaction_id, "validation", score=score)


def test_edit_kinds_need_the_edited_text(client: Tuneloop) -> None:
    interaction_id = client.log(PROMPT, ANSWER)
    assert interaction_id is not None
    with pytest.raises(InputError, match="edited output"):
        client.feedback(interaction_id, "correction")


def test_unknown_interaction_id_is_named(client: Tuneloop) -> None:
    with pytest.raises(InputError, match="no interaction with id 'nope'"):
        client.thumbs_up("nope")


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"reward_fn_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_custom_reward_function_overrides_the_table(
    config_factory: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _write_module(
        tmp_path,
        monkeypatch,
        (
            "def reward(kind, value, interaction):\n"
            "    if kind == 'validation':\n"
            "        return (value['score'] * 100 - 60) / 40\n"
            "    return 5 if interaction.response.startswith('{') else -0.25\n"
            "def bad(kind, value, interaction):\n"
            "    return 'great'\n"
        ),
    )
    with Tuneloop(config_factory(capture={"reward_function": f"{module}:reward"})) as client:
        interaction_id = client.log(PROMPT, ANSWER)
        assert interaction_id is not None
        assert client.validated(interaction_id, 0.9) == pytest.approx(0.75)
        assert client.thumbs_up(interaction_id) == 1.0  # 5 is clamped to [-1, 1]
        assert client.get(interaction_id).reward == 1.0
    with Tuneloop(config_factory(capture={"reward_function": f"{module}:bad"})) as client:
        interaction_id = client.log(PROMPT, ANSWER)
        assert interaction_id is not None
        with pytest.raises(ConfigError, match=rf"{module}:bad.*returned 'great'"):
            client.thumbs_up(interaction_id)
        assert client.get(interaction_id).feedback == []
    with Tuneloop(config_factory(capture={"reward_function": "no_such_module_x:f"})) as client:
        interaction_id = client.log(PROMPT, ANSWER)
        assert interaction_id is not None
        with pytest.raises(ConfigError, match=r"capture\.reward_function.*no_such_module_x"):
            client.thumbs_up(interaction_id)


# --- aggregate reward and corrected response -------------------------------------------------


def test_aggregate_rule() -> None:
    assert aggregate_reward([]) is None
    assert aggregate_reward([("saved", 0.8), ("thumbs_down", -1.0)]) == -1.0
    assert aggregate_reward([("thumbs_down", -1.0), ("thumbs_up", 1.0), ("saved", 0.8)]) == 1.0
    assert aggregate_reward([("validation", 1.0), ("saved", 0.8)]) == pytest.approx(0.9)
    assert aggregate_reward([("abandoned", -0.5), ("saved", 0.8)]) == pytest.approx(0.8)
    assert aggregate_reward([("abandoned", -0.5)]) == -0.5


def test_aggregate_reward_on_the_row(client: Tuneloop) -> None:
    interaction_id = client.log(PROMPT, ANSWER)
    assert interaction_id is not None
    assert client.get(interaction_id).reward is None
    client.validated(interaction_id, 1.0)
    client.saved(interaction_id)
    assert client.get(interaction_id).reward == pytest.approx(0.9)
    client.thumbs_down(interaction_id)
    assert client.get(interaction_id).reward == -1.0
    client.thumbs_up(interaction_id)  # the latest explicit verdict wins
    assert client.get(interaction_id).reward == 1.0


def test_edits_become_the_corrected_response(client: Tuneloop) -> None:
    first = client.log(PROMPT, ANSWER)
    second = client.log(PROMPT, ANSWER)
    assert first is not None and second is not None
    client.correct(first, '{"greeting": "hi"}')
    assert client.get(first).corrected_response == '{"greeting": "hi"}'
    client.saved(second, edited=ANSWER)  # unchanged: saved as-is
    assert [f.kind for f in client.get(second).feedback] == ["saved"]
    assert client.get(second).corrected_response is None
    client.saved(second, edited='{"greeting": "hey"}')
    row = client.get(second)
    assert [f.kind for f in row.feedback] == ["saved", "saved_with_edits"]
    assert row.corrected_response == '{"greeting": "hey"}'


# --- quality -----------------------------------------------------------------------------------


def test_quality_examples_of_the_strategy() -> None:
    def score(*kinds: str, valid: bool = True, continued: bool = False, val: float = 0) -> int:
        events = [(kind, {"score": val} if kind == "validation" else {}) for kind in kinds]
        return quality_score(valid=valid, events=events, continued=continued)

    assert score("thumbs_up", "saved") == 8  # valid JSON + thumbs up + saved
    assert score("thumbs_up", "saved", "validation", continued=True, val=0.9) == 10
    assert score() == 3
    assert score("saved_with_edits") == 4
    assert score("correction", "thumbs_up") == 7
    assert score("thumbs_up", valid=False) == 3
    assert score("validation", val=0.79) == 3
    assert score("validation", val=0.8, continued=True) == 5
    assert score("validation", "thumbs_down", val=0.8, continued=True) == 2  # capped
    assert score("thumbs_down", "thumbs_up", "saved") == 8  # changed their mind


def test_structural_validity() -> None:
    assert json_validity('{"a": 1}') is True
    assert json_validity('```json\n{"a": 1}\n```') is True
    assert json_validity('{"a": 1') is False
    assert json_validity("```json\n{oops\n```") is False
    assert json_validity("plain text") is None
    assert json_validity("plain text", {"response_format": "json"}) is False
    assert structurally_valid("plain text", None) is True
    assert structurally_valid("   ", None) is False
    assert structurally_valid('{"a": 1', False) is False


def test_extract_json() -> None:
    assert extract_json('```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert extract_json("```\n[1]\n```") == [1]
    assert extract_json('Here it is: {"a": 1} done') is None
    assert extract_json('Here it is: {"a": 1} done', lenient=True) == {"a": 1}
    assert extract_json('text\n```json\n{"b": 2}\n```\nmore', lenient=True) == {"b": 2}
    assert extract_json("null") is None and is_valid_json("null")
    assert expects_json("```json\n{unclosed")
    assert not expects_json("hello {}")


def test_quality_on_the_row(client: Tuneloop) -> None:
    good = client.log(PROMPT, ANSWER)
    broken = client.log(PROMPT, '{"greeting": ')
    text = client.log(PROMPT, "Hello!")
    assert good and broken and text
    assert (client.get(good).quality, client.get(good).valid_json) == (3, True)
    assert (client.get(broken).quality, client.get(broken).valid_json) == (0, False)
    assert (client.get(text).quality, client.get(text).valid_json) == (3, None)
    client.thumbs_up(good)
    client.saved(good)
    assert client.get(good).quality == 8


def test_conversation_continued_adds_a_point(client: Tuneloop) -> None:
    first = client.log(PROMPT, ANSWER, tenant="t", session_id="s", created_at=T0)
    assert first is not None and client.get(first).quality == 3
    client.log(
        [*PROMPT, {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "and?"}],
        ANSWER,
        tenant="t",
        session_id="s",
        created_at=T0 + timedelta(seconds=30),
    )
    assert client.get(first).quality == 4


def test_import_tuneloop_is_light_and_connect_takes_a_path(
    config_file: Path, tmp_path: Path
) -> None:
    probe = "import sys, tuneloop; print('sqlalchemy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
    with tuneloop.connect(config_file) as tl:
        assert tl.config.workspace == tmp_path / "ws"
        assert tl.log(PROMPT, ANSWER) is not None


# --- logging, validation, opt-out ------------------------------------------------------------


def test_log_stores_everything(client: Tuneloop) -> None:
    interaction_id = client.log(
        PROMPT,
        ANSWER,
        model="big",
        task="greet",
        metadata={"k": "v"},
        tags=["a"],
        tenant="t",
        session_id="s",
        provider="openai",
        latency_ms=12.5,
        prompt_tokens=3,
        completion_tokens=4,
        cost_usd=0.001,
        created_at="2025-03-01T13:00:00+01:00",
    )
    assert interaction_id is not None
    row = client.get(interaction_id)
    assert (row.task, row.source, row.model, row.provider, row.tenant) == (
        "greet",
        "app",
        "big",
        "openai",
        "t",
    )
    assert row.messages == PROMPT and row.response == ANSWER
    assert row.metadata_ == {"k": "v"} and row.tags == ["a"]
    assert (row.latency_ms, row.prompt_tokens, row.completion_tokens) == (12.5, 3, 4)
    assert row.created_at.replace(tzinfo=UTC) == T0
    assert len(row.prompt_hash) == 64
    other = client.get(client.log(list(PROMPT), "other") or "")
    assert other.prompt_hash == row.prompt_hash and other.task == "default"


@pytest.mark.parametrize(
    ("messages", "response", "options", "message"),
    [
        ([], "r", {}, "messages must be a non-empty list"),
        ("hello", "r", {}, "messages must be a non-empty list"),
        ([{"role": "bot", "content": "x"}], "r", {}, r"messages\[0\]\.role must be one of"),
        ([{"role": "user"}], "r", {}, r"messages\[0\]\.content must be text"),
        (PROMPT, None, {}, "response must be text"),
        (PROMPT, "r", {"tenant": "x" * 201}, "tenant is 201 characters"),
        (PROMPT, "r", {"latency_ms": -1}, "latency_ms must be a number"),
        (PROMPT, "r", {"prompt_tokens": 1.5}, "prompt_tokens must be a whole number"),
        (PROMPT, "r", {"tags": "a"}, "tags must be a list"),
        (PROMPT, "r", {"metadata": {"x": float("nan")}}, "metadata must be JSON"),
        (PROMPT, "r", {"created_at": "yesterday"}, "created_at must be an ISO-8601"),
    ],
)
def test_bad_log_input_names_the_field(
    client: Tuneloop, messages: Any, response: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        client.log(messages, response, **options)
    assert count(client) == 0


def test_log_many_is_one_transaction(client: Tuneloop) -> None:
    ids = client.log_many(
        [
            {"messages": PROMPT, "response": ANSWER, "tenant": "a"},
            {"messages": PROMPT, "response": "x", "task": "other"},
        ]
    )
    assert len(ids) == 2 and all(ids)
    with pytest.raises(InputError, match=r"records\[1\]: response must be text"):
        client.log_many([{"messages": PROMPT, "response": ANSWER}, {"messages": PROMPT}])
    assert count(client) == 2


def test_opted_out_tenants_in_the_config_are_never_stored(config_factory: ConfigFactory) -> None:
    with Tuneloop(config_factory(capture={"opted_out_tenants": ["acme"]})) as client:
        assert client.log(PROMPT, ANSWER, tenant="acme") is None
        assert client.log_many([{"messages": PROMPT, "response": ANSWER, "tenant": "acme"}]) == [
            None
        ]
        assert client.log(PROMPT, ANSWER, tenant="other") is not None
        assert count(client) == 1
        assert client.is_opted_out("acme")
        with pytest.raises(InputError, match="opted out in the config"):
            client.opt_in("acme")


def test_opt_out_deletes_and_stops_collection(client: Tuneloop) -> None:
    theirs = client.log(PROMPT, ANSWER, tenant="acme")
    client.log(PROMPT, ANSWER, tenant="acme", session_id="s")
    ours = client.log(PROMPT, ANSWER, tenant="other")
    assert theirs and ours
    client.thumbs_up(theirs)
    assert client.opt_out("acme", reason="GDPR request").interactions == 2
    assert count(client) == 1 and count(client, Feedback) == 0
    assert client.log(PROMPT, ANSWER, tenant="acme") is None
    assert count(client) == 1
    with client.store.session() as session:
        entry = session.get(OptOut, "acme")
        assert entry is not None and entry.reason == "GDPR request"
    assert client.opt_in("acme") is True
    assert client.opt_in("acme") is False
    assert client.log(PROMPT, ANSWER, tenant="acme") is not None


# --- implicit signals --------------------------------------------------------------------------


def _kinds(client: Tuneloop, interaction_id: str) -> list[str]:
    return [f.kind for f in client.get(interaction_id).feedback]


def test_regenerate_is_detected_within_the_window(client: Tuneloop) -> None:
    first = client.log(PROMPT, ANSWER, tenant="t", session_id="s", created_at=T0)
    second = client.log(
        PROMPT,
        '{"greeting": "yo"}',
        tenant="t",
        session_id="s",
        created_at=T0 + timedelta(seconds=20),
    )
    assert first and second
    assert _kinds(client, first) == ["regenerated"] and _kinds(client, second) == []
    row = client.get(first)
    assert row.reward == pytest.approx(-0.6)
    assert row.quality == 3  # asking again is not "conversation continued"
    assert row.feedback[0].value == {"by": second}


@pytest.mark.parametrize(
    ("later", "options"),
    [
        (timedelta(hours=1), {"tenant": "t", "session_id": "s"}),  # outside the window
        (timedelta(seconds=5), {"tenant": "t", "session_id": "other"}),  # another session
        (timedelta(seconds=5), {"tenant": "u", "session_id": "s"}),  # another tenant
        (timedelta(seconds=5), {}),  # nobody known: may be two users
    ],
)
def test_no_regenerate_otherwise(
    client: Tuneloop, later: timedelta, options: dict[str, str]
) -> None:
    first = client.log(
        PROMPT, ANSWER, created_at=T0, **({"tenant": "t", "session_id": "s"} if options else {})
    )
    client.log(PROMPT, ANSWER, created_at=T0 + later, **options)
    assert first and _kinds(client, first) == []


def test_regenerate_by_tenant_without_session(client: Tuneloop) -> None:
    first = client.log(PROMPT, ANSWER, tenant="t", created_at=T0)
    client.log(PROMPT, ANSWER, tenant="t", created_at=T0 + timedelta(seconds=5))
    assert first and _kinds(client, first) == ["regenerated"]


def test_mark_abandoned(client: Tuneloop) -> None:
    now = T0 + timedelta(hours=1)
    silent = client.log(PROMPT, ANSWER, session_id="a", created_at=T0)
    rated = client.log(PROMPT, ANSWER, session_id="b", created_at=T0)
    followed = client.log(PROMPT, ANSWER, session_id="c", created_at=T0)
    client.log(
        [{"role": "user", "content": "next"}],
        "ok",
        session_id="c",
        created_at=T0 + timedelta(minutes=1),
    )
    recent = client.log(PROMPT, ANSWER, session_id="d", created_at=now - timedelta(minutes=1))
    imported = client.log(PROMPT, ANSWER, source="import", created_at=T0)
    assert silent and rated and followed and recent and imported
    client.thumbs_up(rated)
    assert client.mark_abandoned(now) == 2  # `silent` and the follow-up in session c
    assert _kinds(client, silent) == ["abandoned"]
    assert client.get(silent).reward == -0.5
    for interaction_id in (rated, followed, recent, imported):
        assert "abandoned" not in _kinds(client, interaction_id)
    assert client.mark_abandoned(now) == 0
    client.saved(silent)  # the user came back after all: abandonment no longer counts
    assert client.get(silent).reward == pytest.approx(0.8)


def test_batched_logging_sees_the_same_signals_as_single_calls(client: Tuneloop) -> None:
    """log_many/import look things up per batch (prefetch); log() per call. Same result."""
    other = [{"role": "user", "content": "other"}]
    script = [
        (PROMPT, "s1"),
        (PROMPT, "s1"),
        (other, "s1"),
        (other, "s2"),
        (PROMPT, "s2"),
        (other, "s1"),
        (other, "s1"),
        (PROMPT, None),
    ]

    def run(tenant: str, batched: bool) -> list[tuple[Any, ...]]:
        client.log(PROMPT, ANSWER, tenant=tenant, session_id="s1")  # stored before the batch
        records = [
            {"messages": messages, "response": ANSWER, "tenant": tenant, "session_id": session}
            for messages, session in script
        ]
        ids = client.log_many(records) if batched else [client.log(**record) for record in records]
        with client.store.session() as session:
            rows = session.scalars(
                select(Interaction)
                .where(Interaction.tenant == tenant)
                .order_by(Interaction.created_at)
            ).all()
            assert [row.id for row in rows[1:]] == ids
            return [(row.quality, row.reward, sorted(f.kind for f in row.feedback)) for row in rows]

    single = run("single", batched=False)
    assert run("batched", batched=True) == single
    assert sum(kinds.count("regenerated") for *_, kinds in single) == 4


# --- import ------------------------------------------------------------------------------------


def _jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_import_good_file(config_factory: ConfigFactory, tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "calls.jsonl",
        [
            {
                "messages": PROMPT,
                "response": ANSWER,
                "tenant": "t",
                "model": "big",
                "feedback": [{"kind": "thumbs_up"}, {"kind": "saved"}],
            },
            {
                "messages": [*PROMPT, {"role": "assistant", "content": '{"a": 1}'}],
                "tools": [{"type": "function"}],
            },
            "",
            {
                "messages": PROMPT,
                "response": "x",
                "task": "own-task",
                "source": "gateway",
                "feedback": [
                    {"kind": "validation", "score": 0.85, "created_at": "2025-01-01T00:00:00Z"}
                ],
            },
            {"messages": PROMPT, "response": ANSWER, "tenant": "acme"},
        ],
    )
    with Tuneloop(config_factory(capture={"opted_out_tenants": ["acme"]})) as client:
        report = import_jsonl(client, path, task="imported")
        assert (report.imported, report.skipped, report.opted_out, report.feedback) == (3, 0, 1, 3)
        assert report.errors == []
        with client.store.session() as session:
            rows = session.scalars(select(Interaction).order_by(Interaction.created_at)).all()
            by_response = {row.response: row for row in rows}
        first, openai, own = by_response[ANSWER], by_response['{"a": 1}'], by_response["x"]
        assert (first.task, first.source, first.model, first.quality) == (
            "imported",
            "import",
            "big",
            8,
        )
        assert openai.messages == PROMPT and openai.metadata_ == {"tools": [{"type": "function"}]}
        assert (own.task, own.source, own.reward) == ("own-task", "gateway", pytest.approx(0.85))


def test_import_reports_bad_lines_and_keeps_going(client: Tuneloop, tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"messages": PROMPT, "response": ANSWER},
            "{not json",
            {"messages": PROMPT},
            [1, 2],
            {"messages": [{"role": "robot", "content": "x"}], "response": "r"},
            {"messages": PROMPT, "response": "r", "feedback": [{"kind": "meh"}]},
            {"messages": PROMPT, "response": "r", "feedback": [{"kind": "validation", "score": 7}]},
            {"messages": PROMPT, "response": "last good"},
        ],
    )
    report = import_jsonl(client, path)
    assert (report.imported, report.skipped) == (2, 6)
    assert [error.split(": ")[0] for error in report.errors] == [
        f"{path}:{n}" for n in (2, 3, 4, 5, 6, 7)
    ]
    assert "not valid JSON" in report.errors[0]
    assert "no response" in report.errors[1]
    assert "messages[0].role" in report.errors[3]
    assert "unknown feedback kind 'meh'" in report.errors[4]
    assert count(client) == 2 and count(client, Feedback) == 0


def test_import_missing_file_names_the_path(client: Tuneloop, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read .*missing\.jsonl"):
        import_jsonl(client, tmp_path / "missing.jsonl")


def test_import_crash_leaves_whole_batches_only(
    config_factory: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _write_module(
        tmp_path,
        monkeypatch,
        (
            "def reward(kind, value, interaction):\n"
            "    if interaction.response == 'boom':\n"
            "        raise RuntimeError('broken scorer')\n"
            "    return 0.5\n"
        ),
    )
    lines = [
        {"messages": PROMPT, "response": response, "feedback": [{"kind": "saved"}]}
        for response in ("a", "b", "c", "boom", "e")
    ]
    path = _jsonl(tmp_path / "calls.jsonl", lines)
    with Tuneloop(config_factory(capture={"reward_function": f"{module}:reward"})) as client:
        with pytest.raises(ConfigError, match=r"calls\.jsonl:4: .*broken scorer.*lines 3-4"):
            import_jsonl(client, path, batch_lines=2)
        assert count(client) == 2 and count(client, Feedback) == 2


# --- stats -------------------------------------------------------------------------------------


def test_collection_stats(client: Tuneloop) -> None:
    good = client.log(PROMPT, ANSWER, task="a")
    bad = client.log(PROMPT, '{"x"', task="a", source="gateway")
    client.log(PROMPT, "text", task="b")
    assert good and bad
    client.thumbs_up(good)
    client.saved(good)
    client.thumbs_down(bad)
    stats = collection_stats(client.store, curate=client.config.curate)
    assert stats["interactions"] == 3
    assert stats["by_task"] == {"a": 2, "b": 1}
    assert stats["by_source"] == {"app": 2, "gateway": 1}
    assert stats["feedback"] == {"saved": 1, "thumbs_down": 1, "thumbs_up": 1}
    assert stats["with_feedback"] == 2
    assert stats["reward"]["rated"] == 2 and stats["reward"]["mean"] == 0.0
    histogram = stats["reward"]["histogram"]
    assert len(histogram) == 10 and sum(b["count"] for b in histogram) == 2
    assert histogram[0]["count"] == 1 and histogram[-1]["count"] == 1
    assert stats["quality"]["histogram"]["8"] == 1 and stats["quality"]["histogram"]["0"] == 1
    assert stats["valid_json"] == {"checked": 2, "valid": 1, "rate": 0.5}
    assert stats["export"]["passing"] == 1
    assert stats["export"]["share"] == pytest.approx(1 / 3, abs=1e-3)
    only_a = collection_stats(client.store, "a")
    assert only_a["interactions"] == 2 and only_a["by_task"] == {"a": 2}


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text(f'workspace = "ws"\n[store]\nurl = "{store_url}"\n', encoding="utf-8")
    return path


def test_cli_import_feedback_and_stats(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    path = _jsonl(tmp_path / "calls.jsonl", [{"messages": PROMPT, "response": ANSWER}] * 3)
    result = runner.invoke(app, ["log", "import", str(path), "--task", "t", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "3 imported, 0 skipped" in result.output

    result = runner.invoke(app, ["stats", "--json", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["by_task"] == {"t": 3} and stats["by_source"] == {"import": 3}

    with Tuneloop(config_for(config_file)) as client, client.store.session() as session:
        interaction_id = session.scalars(select(Interaction.id)).first()
    assert interaction_id is not None
    result = runner.invoke(
        app, ["feedback", interaction_id, "validation", "--score", "0.9", "-c", str(config_file)]
    )
    assert result.exit_code == 0, result.output
    assert "reward +0.90" in result.output
    edited = tmp_path / "edited.json"
    edited.write_text('{"greeting": "hi"}', encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "feedback",
            interaction_id,
            "correction",
            "--edited-file",
            str(edited),
            "-c",
            str(config_file),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["feedback", interaction_id, "nope", "-c", str(config_file)])
    assert isinstance(result.exception, InputError)

    result = runner.invoke(app, ["stats", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "Reward" in result.output and "Quality" in result.output


def test_cli_import_with_bad_lines_exits_1(config_file: Path, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"messages": PROMPT, "response": ANSWER}, "{oops"])
    result = CliRunner().invoke(app, ["log", "import", str(path), "-c", str(config_file)])
    assert result.exit_code == 1
    assert "1 imported, 1 skipped" in result.stdout
    assert f"{path}:2" in result.stderr.replace("\n", "")


def test_cli_opt_out_and_mark_abandoned(config_file: Path) -> None:
    with Tuneloop(config_for(config_file)) as client:
        client.log(PROMPT, ANSWER, tenant="acme")
        client.log(PROMPT, ANSWER, created_at=T0)
    runner = CliRunner()
    result = runner.invoke(app, ["log", "opt-out", "acme", "-c", str(config_file)])
    assert result.exit_code == 0 and "deleted 1" in result.output
    result = runner.invoke(app, ["log", "mark-abandoned", "-c", str(config_file)])
    assert result.exit_code == 0 and "marked 1" in result.output


def config_for(path: Path) -> Any:
    from tuneloop.config import load_config

    return load_config(path)


def test_quality_judges_the_corrected_label(client: Tuneloop) -> None:
    """A broken answer fixed by the user is judged on the fix, which is what training uses."""
    messages = [{"role": "user", "content": "layout please"}]
    broken = client.log(messages, '{"type": "FRAME", "children": [')
    assert broken is not None
    assert client.get(broken).quality == 0
    client.correct(broken, '{"type": "FRAME", "children": []}')
    row = client.get(broken)
    assert row.corrected_response == '{"type": "FRAME", "children": []}'
    assert row.quality == 3 + 1  # structurally valid label + accepted with edits
    assert row.valid_json is False  # what the model answered is still recorded as broken


def _derived(client: Tuneloop, keys: list[str]) -> list[tuple[Any, ...]]:
    """Per call, in order: what capture derives from its neighbours (reward, quality, signals)."""
    with client.store.session() as session:
        rows = {
            row.idempotency_key: row
            for row in session.scalars(
                select(Interaction).where(Interaction.idempotency_key.in_(keys))
            )
        }
        return [
            (
                rows[key].reward,
                rows[key].quality,
                sorted(f.kind for f in rows[key].feedback),
            )
            for key in keys
        ]


def test_back_dated_calls_score_the_same_in_one_batch_as_one_by_one(
    config_factory: Callable[..., Config],
) -> None:
    """A gateway backlog arrives back-dated and mostly in order: one ``log_many`` must derive
    what logging each call in its own transaction derives, late arrivals included. (Calls
    of one session at the same instant have no order: ties are left out.)"""
    import random

    generator = random.Random(7)
    calls: list[dict[str, Any]] = []
    when = T0
    for number in range(60):
        when += timedelta(seconds=generator.choice([1, 4, 9, 40]))
        late = generator.random() < 0.15  # an older call arriving after newer ones
        created = when - timedelta(seconds=generator.choice([5, 30])) if late else when
        calls.append(
            {
                "id": f"call-{number}",
                "messages": [{"role": "user", "content": f"screen {generator.randrange(3)}"}],
                "response": ANSWER,
                "session_id": f"s{generator.randrange(3)}",
                "tenant": generator.choice(["t", None]),
                "created_at": created.isoformat(),
            }
        )

    def copy(prefix: str) -> list[dict[str, Any]]:  # one store: own ids and sessions per copy
        return [
            {**call, "id": prefix + call["id"], "session_id": prefix + call["session_id"]}
            for call in calls
        ]

    client = Tuneloop(config_factory())
    batched, single = copy("a-"), copy("b-")
    for start in range(0, len(batched), 25):
        client.log_many(batched[start : start + 25])
    for call in single:
        client.log_many([call])
    derived = _derived(client, [call["id"] for call in single])
    assert _derived(client, [call["id"] for call in batched]) == derived
    assert any("regenerated" in kinds for *_, kinds in derived)
    assert len({reward for reward, *_ in derived}) > 1
    client.close()
