"""Curate: validation, filters, dedup, split, export, versioning and the ``dataset`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.config import Config, CurateConfig
from tuneloop.curate import (
    Example,
    build_dataset,
    list_datasets,
    load_split,
    resolve_dataset,
    select_examples,
    split_examples,
    validate_example,
)
from tuneloop.curate.export import TokenCounter
from tuneloop.curate.pricing import TRAINING_PRICES
from tuneloop.errors import InputError
from tuneloop.store import Dataset, DatasetExample, Interaction, Store

SYSTEM = {"role": "system", "content": "Answer with one JSON object."}
_clock = count()


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Config:
    """A workspace in tmp_path on the conftest store (SQLite and PostgreSQL)."""
    return Config.model_validate(
        {"workspace": str(tmp_path / "ws"), "task": "layout", "store": {"url": store_url}}
    )


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = Store(config.store_url)
    yield store
    store.close()


def add(
    store: Store,
    prompt: str,
    response: str = '{"type": "FRAME"}',
    *,
    task: str = "layout",
    reward: float | None = 1.0,
    quality: int | None = 8,
    source: str = "app",
    corrected: str | None = None,
    valid_json: bool | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Insert an interaction as capture would leave it (rewards set by hand here)."""
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
    with store.session() as session:
        row = Interaction(
            task=task,
            source=source,
            messages=[SYSTEM, {"role": "user", "content": prompt}],
            response=response,
            reward=reward,
            quality=quality,
            corrected_response=corrected,
            valid_json=valid_json,
            metadata_=metadata or {},
            created_at=created,
        )
        session.add(row)
        session.flush()
        return row.id


def example(prompt: str, target: str = "{}", interaction_id: str = "x") -> Example:
    return Example(
        interaction_id,
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}],
    )


# --- validation -------------------------------------------------------------------------------


def test_valid_example_has_no_problems() -> None:
    good = {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "{}"},
        ]
    }
    assert validate_example(good) == []


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ([], "must be a JSON object"),
        ({"msgs": []}, "missing key 'messages'"),
        ({"messages": []}, "non-empty list"),
        ({"messages": ["hi"]}, "messages[0] must be an object"),
        (
            {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},
            "role 'bot'",
        ),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]},
            "content must be a string",
        ),
        (
            {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "y"}]},
            "user content is empty",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]},
            "assistant content is empty",
        ),
        ({"messages": [{"role": "assistant", "content": "y"}]}, "no user message"),
        ({"messages": [{"role": "user", "content": "x"}]}, "last message must be from the"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    SYSTEM,
                    {"role": "assistant", "content": "y"},
                ]
            },
            "only as the first message",
        ),
    ],
)
def test_invalid_examples_name_the_problem(bad: Any, problem: str) -> None:
    problems = validate_example(bad)
    assert any(problem in p for p in problems), problems


# --- selection --------------------------------------------------------------------------------


def test_filters_by_reward_and_quality_and_keeps_synthetic(store: Store) -> None:
    keep = add(store, "good", reward=0.5, quality=6)
    add(store, "low reward", reward=0.2, quality=9)
    add(store, "low quality", reward=0.9, quality=4)
    add(store, "no feedback", reward=None, quality=3)
    synthetic = add(store, "synthetic", reward=None, quality=3, source="synthetic")
    selection = select_examples(store, CurateConfig(), task="layout")
    assert {e.interaction_id for e in selection.examples} == {keep, synthetic}
    assert selection.candidates == 5
    assert selection.drop_reasons == {"low_reward": 1, "low_quality": 1, "unrated": 1}

    relaxed = select_examples(
        store, CurateConfig(min_reward=0.1, min_quality=4, keep_unrated=True), task="layout"
    )
    assert len(relaxed.examples) == 5 and not relaxed.drop_reasons


def test_only_the_requested_task_is_selected(store: Store) -> None:
    add(store, "a", task="layout")
    add(store, "b", task="other")
    assert [e.target for e in select_examples(store, CurateConfig(), task="other").examples] == [
        '{"type": "FRAME"}'
    ]


def test_corrected_response_is_the_target(store: Store) -> None:
    add(store, "fix me", response='{"type": "TEXT"}', corrected='{"type": "FRAME"}')
    add(store, "broken", response="{oops", valid_json=False)
    add(store, "broken but fixed", response="{oops", valid_json=False, corrected='{"ok": 1}')
    selection = select_examples(store, CurateConfig(), task="layout")
    targets = {e.prompt[-1]["content"]: e.target for e in selection.examples}
    assert targets == {"fix me": '{"type": "FRAME"}', "broken but fixed": '{"ok": 1}'}
    assert selection.drop_reasons == {"invalid_json": 1}
    assert all(e.messages[-1]["role"] == "assistant" for e in selection.examples)


def test_exact_duplicates_are_dropped(store: Store) -> None:
    first = add(store, "Design a dashboard")
    add(store, "Design   a dashboard ", response='{"type":  "FRAME"}')  # whitespace only
    add(store, "Design a dashboard", response='{"type": "TEXT"}')  # another answer: kept
    selection = select_examples(store, CurateConfig(), task="layout")
    assert len(selection.examples) == 2
    assert first in {e.interaction_id for e in selection.examples}
    assert selection.drop_reasons == {"duplicate": 1}


def test_invalid_examples_are_dropped_with_a_reason(store: Store) -> None:
    add(store, "", response="{}")  # empty user message
    selection = select_examples(store, CurateConfig(), task="layout")
    assert selection.examples == []
    assert selection.drop_reasons == {"invalid: messages[1]: user content is empty": 1}


def test_transforms_run_before_validation_and_dedup(store: Store) -> None:
    add(store, "mail bob@example.com")
    add(store, "mail ann@example.com")

    def redact_emails(ex: Example) -> Example:
        prompt = [
            {**m, "content": m["content"].split(" ")[0] + " [EMAIL]"} if m["role"] == "user" else m
            for m in ex.prompt
        ]
        return Example(ex.interaction_id, [*prompt, ex.messages[-1]], ex.category, ex.source)

    def drop_all(_ex: Example) -> None:
        return None

    selection = select_examples(store, CurateConfig(), task="layout", transforms=[redact_emails])
    assert [e.prompt[-1]["content"] for e in selection.examples] == ["mail [EMAIL]"]
    assert selection.drop_reasons == {"duplicate": 1}
    dropped = select_examples(store, CurateConfig(), task="layout", transforms=[drop_all])
    assert dropped.drop_reasons == {"drop_all": 2}


# --- split ------------------------------------------------------------------------------------


def test_split_is_deterministic_and_prompt_disjoint() -> None:
    examples = [example(f"prompt {i % 40}", f"answer {i}", str(i)) for i in range(100)]
    train, held_out = split_examples(examples, eval_fraction=0.25, seed="s")
    again_train, again_eval = split_examples(list(reversed(examples)), eval_fraction=0.25, seed="s")
    assert {e.interaction_id for e in train} == {e.interaction_id for e in again_train}
    assert {e.interaction_id for e in held_out} == {e.interaction_id for e in again_eval}
    assert not {e.prompt_hash for e in train} & {e.prompt_hash for e in held_out}
    assert len(train) + len(held_out) == 100
    assert 2 <= len({e.prompt_hash for e in held_out}) <= 20  # about a quarter of 40 prompts
    other_seed = split_examples(examples, eval_fraction=0.25, seed="other")[1]
    assert {e.interaction_id for e in other_seed} != {e.interaction_id for e in held_out}


def test_a_prompt_keeps_its_split_when_data_grows() -> None:
    small = [example(f"p{i}", f"[{i}]") for i in range(30)]
    large = small + [example(f"q{i}", f"[{i + 30}]") for i in range(30)]
    small_eval = {e.prompt_hash for e in split_examples(small, eval_fraction=0.3, seed="s")[1]}
    large_eval = {e.prompt_hash for e in split_examples(large, eval_fraction=0.3, seed="s")[1]}
    assert small_eval == {e.prompt_hash for e in small} & large_eval


def test_split_guarantees_one_eval_example() -> None:
    for seed in ("a", "b", "c", "d"):
        train, held_out = split_examples(
            [example("x", "1"), example("y", "2")], eval_fraction=0.01, seed=seed
        )
        assert len(train) == 1 and len(held_out) == 1
        train, held_out = split_examples(
            [example("x", "1"), example("y", "2")], eval_fraction=0.99, seed=seed
        )
        assert len(train) == 1 and len(held_out) == 1
    same_prompt = [example("x", "1"), example("x", "2")]
    assert split_examples(same_prompt, eval_fraction=0.5, seed="a") == (same_prompt, [])
    assert split_examples([example("x"), example("y")], eval_fraction=0, seed="a")[1] == []


def test_no_eval_answer_occurs_in_training() -> None:
    # Four phrasings per request share one answer, as in the demo: they must stay together.
    examples = [
        example(f"phrasing {p} of request {r}", f'{{"screen": {r}}}', f"{r}-{p}")
        for r in range(30)
        for p in range(4)
    ]
    train, held_out = split_examples(examples, eval_fraction=0.25, seed="s")
    assert held_out and train
    assert not {e.target_hash for e in train} & {e.target_hash for e in held_out}
    # JSON answers compare by value: key order and whitespace do not make a new answer.
    reordered = [example("other wording", '{ "screen" : 0 }', "z"), *examples]
    train, held_out = split_examples(reordered, eval_fraction=0.25, seed="s")
    assert not {e.target_hash for e in train} & {e.target_hash for e in held_out}


def test_metadata_group_keeps_a_whole_kind_of_request_out_of_training() -> None:
    def tagged(i: int, category: str) -> Example:
        return Example(
            str(i),
            [{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": f"[{i}]"}],
            metadata={"category": category},
        )

    examples = [tagged(i, f"c{i % 6}") for i in range(60)]
    train, held_out = split_examples(
        examples, eval_fraction=0.3, seed="s", split_group="metadata:category"
    )
    assert held_out and train
    assert not {e.metadata["category"] for e in train} & {e.metadata["category"] for e in held_out}
    # Without the metadata key the categories mix across the split.
    train, held_out = split_examples(examples, eval_fraction=0.3, seed="s")
    assert {e.metadata["category"] for e in train} & {e.metadata["category"] for e in held_out}


def test_split_group_is_validated() -> None:
    with pytest.raises(ValidationError):
        CurateConfig(split_group="metadata:")
    assert CurateConfig(split_group="metadata:category,platform").split_group


# --- build, export, versions --------------------------------------------------------------------


def seed_data(store: Store, n: int = 12) -> list[str]:
    return [
        add(
            store,
            f"Design screen {i}",
            json.dumps({"type": "FRAME", "i": i}),
            metadata={"category": "dashboard" if i % 3 else "settings"},
        )
        for i in range(n)
    ]


def test_build_exports_files_manifest_and_rows(store: Store, config: Config) -> None:
    ids = seed_data(store)
    add(store, "rejected", reward=-1.0)
    dataset = build_dataset(store, config, task="layout")
    assert (dataset.name, dataset.version, dataset.label) == ("layout", 1, "layout@1")
    path = Path(dataset.path)
    assert path == (config.artifacts_dir / "datasets" / "layout" / "v1").resolve()
    train, held_out = load_split(dataset, "train"), load_split(dataset, "eval")
    assert len(train) + len(held_out) == 12 and held_out
    assert all(set(record) == {"messages"} for record in train + held_out)
    first_line = (path / "train.jsonl").read_text().splitlines()[0]
    assert first_line.index('"content"') < first_line.index('"role"')  # keys sorted

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["content_hash"] == dataset.content_hash
    assert manifest["counts"] == {"train": len(train), "eval": len(held_out), "total": 12}
    assert manifest["drop_reasons"] == {"low_reward": 1} and manifest["candidates"] == 13
    assert manifest["filters"]["min_reward"] == 0.3 and manifest["filters"]["min_quality"] == 5
    coverage = manifest["coverage"]
    assert sum(coverage["train"].values()) + sum(coverage["eval"].values()) == 12
    assert set(coverage["train"]) | set(coverage["eval"]) == {"dashboard", "settings"}
    assert manifest["tokens"]["estimated"] is True
    assert manifest["tokens"]["train"]["total"] > 0
    cost = manifest["cost_estimate"]
    assert cost["epochs"] == config.train.epochs and cost["usd"]["local"] == 0
    gpt4o = next(p for p in TRAINING_PRICES if p.target == "openai/gpt-4o")
    expected = cost["training_tokens"] * config.train.epochs / 1e6 * gpt4o.usd_per_1m_tokens
    assert cost["usd"]["openai/gpt-4o"] == pytest.approx(expected, abs=1e-4)
    assert dataset.stats["counts"] == manifest["counts"]
    assert dataset.stats["train_examples"] == len(train)
    assert dataset.params["task"] == "layout"

    with store.session() as session:
        rows = session.scalars(
            select(DatasetExample).where(DatasetExample.dataset_id == dataset.id)
        ).all()
    assert {r.interaction_id for r in rows} == set(ids)
    with_ids = load_split(dataset, "eval", with_ids=True)
    eval_ids = {r.interaction_id for r in rows if r.split == "eval"}
    assert {r["interaction_id"] for r in with_ids} == eval_ids


def test_same_content_same_version_new_data_new_version(store: Store, config: Config) -> None:
    seed_data(store)
    first = build_dataset(store, config, task="layout")
    again = build_dataset(store, config, task="layout")
    assert again.id == first.id and again.version == 1
    add(store, "a low-reward one", reward=0.0)  # filtered out: content unchanged
    assert build_dataset(store, config, task="layout").id == first.id
    add(store, "Design a brand new screen")
    second = build_dataset(store, config, task="layout")
    assert second.version == 2 and second.content_hash != first.content_hash
    assert Path(first.path).is_dir() and Path(second.path).name == "v2"
    named = build_dataset(store, config, task="layout", name="layouts-small")
    assert named.label == "layouts-small@1" and named.content_hash == second.content_hash
    assert [d.label for d in list_datasets(store)] == ["layout@1", "layout@2", "layouts-small@1"]
    assert resolve_dataset(store, "layout").version == 2
    assert resolve_dataset(store, "layout@v1").id == first.id
    with pytest.raises(InputError, match="versions: layout@1, layout@2"):
        resolve_dataset(store, "layout@7")


def test_export_is_byte_stable_across_workspaces(tmp_path: Path) -> None:
    hashes, contents = [], []
    for name, order in (("one", range(10)), ("two", reversed(range(10)))):
        config = Config(workspace=tmp_path / name, task="layout")
        store = Store(config.store_url)
        for i in order:
            add(store, f"prompt {i}", f'{{"n": {i}}}')
        dataset = build_dataset(store, config)
        store.close()
        hashes.append(dataset.content_hash)
        contents.append(
            [(Path(dataset.path) / f).read_bytes() for f in ("train.jsonl", "eval.jsonl")]
        )
    assert hashes[0] == hashes[1] and contents[0] == contents[1]


def test_deleted_files_are_restored_on_rebuild(store: Store, config: Config) -> None:
    seed_data(store)
    dataset = build_dataset(store, config)
    (Path(dataset.path) / "train.jsonl").unlink()
    with pytest.raises(InputError, match="rebuild"):
        load_split(dataset, "train")
    assert build_dataset(store, config).id == dataset.id
    assert load_split(dataset, "train")


def test_edited_files_are_refused(store: Store, config: Config) -> None:
    seed_data(store)
    dataset = build_dataset(store, config)
    with (Path(dataset.path) / "eval.jsonl").open("a") as handle:
        handle.write(json.dumps({"messages": []}) + "\n")
    with pytest.raises(InputError, match="changed after it was built"):
        load_split(dataset, "eval")
    with pytest.raises(InputError, match="split 'test'"):
        load_split(dataset, "test")


def test_nothing_left_says_which_filter_to_relax(store: Store, config: Config) -> None:
    with pytest.raises(InputError, match="no interactions logged for task 'layout'"):
        build_dataset(store, config)
    add(store, "a", reward=0.1)
    add(store, "b", reward=0.2)
    add(store, "c", reward=None)
    with pytest.raises(InputError) as caught:
        build_dataset(store, config)
    message = str(caught.value)
    assert "all 3 candidates were dropped" in message
    assert "reward below curate.min_reward: 2 (relax with --min-reward)" in message
    assert "--keep-unrated" in message
    with store.session() as session:
        assert session.scalars(select(Dataset)).all() == []


def test_token_counts_use_the_given_tokenizer(store: Store, config: Config) -> None:
    add(store, "one two three", "four five")
    add(store, "six", "seven")
    dataset = build_dataset(store, config, tokenizer=lambda text: text.split())
    tokens = dataset.stats["tokens"]
    assert tokens["method"] == "tokenizer" and tokens["estimated"] is False
    system_words = len(SYSTEM["content"].split())
    per_message = 4  # export.MESSAGE_OVERHEAD_TOKENS
    expected = 2 * (system_words + 3 * per_message) + 3 + 2 + 1 + 1
    assert tokens["train"]["total"] + tokens["eval"]["total"] == expected
    counter = TokenCounter()
    assert counter.count_text("x" * 9) == 3 and counter.estimated


def test_bad_dataset_name_is_refused(store: Store, config: Config) -> None:
    seed_data(store, 2)
    with pytest.raises(InputError, match="dataset name"):
        build_dataset(store, config, name="../escape")


# --- CLI ---------------------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tuneloop.toml"
    path.write_text('workspace = "ws"\ntask = "layout"\n')
    return path


def test_cli_build_list_validate(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    runner = CliRunner()
    config = Config(workspace=tmp_path / "ws", task="layout")
    store = Store(config.store_url)
    seed_data(store, 6)
    add(store, "meh", reward=0.4, quality=6)
    store.close()

    result = runner.invoke(
        app, ["dataset", "build", "--config", str(config_path), "--min-reward", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert "layout@1" in result.output and "dropped     1" in result.output
    assert "openai/gpt-4o" in result.output and "estimated" in result.output

    result = runner.invoke(
        app, ["dataset", "build", "--config", str(config_path), "--min-reward", "0.5"]
    )
    assert result.exit_code == 0 and "unchanged" in result.output

    result = runner.invoke(app, ["dataset", "list", "--config", str(config_path)])
    assert result.exit_code == 0 and "layout@1" in result.output

    train_file = tmp_path / "ws" / "artifacts" / "datasets" / "layout" / "v1" / "train.jsonl"
    result = runner.invoke(app, ["dataset", "validate", str(train_file)])
    assert result.exit_code == 0 and "ok" in result.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        train_file.read_text().splitlines()[0]
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}]})
        + "\n"
    )
    result = runner.invoke(app, ["dataset", "validate", str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl:2: example_missing_assistant_message" in result.output


def test_cli_build_reports_user_errors(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    result = CliRunner().invoke(app, ["dataset", "build", "--config", str(config_path)])
    assert isinstance(result.exception, InputError)
    assert "no interactions logged" in str(result.exception)


class FakeHFTokenizer:
    """Quacks like a transformers tokenizer: ``encode`` plus, optionally, a chat template."""

    def __init__(self, template: bool) -> None:
        self.template = template

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert not add_special_tokens
        return [0] * len(text.split())

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool) -> Any:
        if not self.template:
            raise ValueError("this tokenizer has no chat template")
        return {"input_ids": [0] * (100 * len(messages))}


def test_token_counter_uses_the_chat_template_when_there_is_one() -> None:
    messages = [{"role": "user", "content": "a b c"}, {"role": "assistant", "content": "d"}]
    with_template = TokenCounter(FakeHFTokenizer(template=True))
    assert with_template.count_example(messages) == 200
    assert with_template.method == "tokenizer chat template"
    without = TokenCounter(FakeHFTokenizer(template=False))
    assert without.count_example(messages) == 3 + 1 + 2 * 4
    assert without.method == "tokenizer" and not without.estimated
