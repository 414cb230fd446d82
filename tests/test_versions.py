"""Dataset versions: near-duplicates, caps, PII on build, pairs, card, show, diff and export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.config import Config
from tuneloop.curate import ValidateOptions, build_dataset, count_lines, load_split, validate_path
from tuneloop.curate.dedup import cap_categories, remove_near_duplicates
from tuneloop.curate.pricing import openai_default_epochs
from tuneloop.curate.select import Example
from tuneloop.curate.versions import diff_refs, export_version, show_version
from tuneloop.store import Interaction, Store

SYSTEM = {"role": "system", "content": "Answer with one JSON object."}
_clock = count()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.model_validate({"workspace": str(tmp_path / "ws"), "task": "layout"})


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = Store(config.store_url)
    yield store
    store.close()


def add(store: Store, prompt: str, response: str, **values: Any) -> str:
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
    with store.session() as session:
        row = Interaction(
            task="layout",
            messages=[SYSTEM, {"role": "user", "content": prompt}],
            response=response,
            reward=values.pop("reward", 1.0),
            quality=values.pop("quality", 8),
            created_at=created,
            **values,
        )
        session.add(row)
        session.flush()
        return row.id


def seed(store: Store, n: int = 20) -> None:
    for i in range(n):
        add(
            store,
            f"Design screen number {i} with a {['blue', 'red', 'green'][i % 3]} header",
            json.dumps({"type": "FRAME", "name": f"screen {i}"}),
            metadata_={"category": ["dashboard", "settings", "profile"][i % 3],
                       "intent": "generate"},
        )  # fmt: skip


def example(i: str, prompt: str, reward: float, category: str = "a") -> Example:
    return Example(
        i,
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": "{}"}],
        category=category,
        reward=reward,
    )


def test_near_duplicates_keep_the_best_rewarded() -> None:
    base = "please design a mobile settings screen with a dark header and two toggles for sound"
    examples = [
        example("low", base + " now", 0.2),
        example("best", base + " please", 0.9),
        example("other", "write a haiku about autumn leaves falling on a quiet lake", 0.1),
        example("same", base, 0.5),
    ]
    result = remove_near_duplicates(examples, threshold=0.7, permutations=128)
    assert sorted(e.interaction_id for e in result.kept) == ["best", "other"]
    assert result.dropped == 2 and sorted(result.clusters["best"]) == ["low", "same"]


def test_templated_prompts_with_different_answers_are_not_near_duplicates() -> None:
    template = "Design a web {} screen with a clean production ready layout and realistic text"
    answers = ["a sidebar with charts and filters", "two toggles for sound and dark mode"]
    examples = [
        Example(
            name,
            [{"role": "user", "content": template.format(name)},
             {"role": "assistant", "content": answer}],
        )
        for name, answer in zip(("dashboard", "settings"), answers, strict=True)
    ]  # fmt: skip
    result = remove_near_duplicates(examples, threshold=0.5, permutations=128)
    assert result.dropped == 0 and len(result.kept) == 2


def test_category_caps_and_balance() -> None:
    examples = [example(f"a{i}", f"p a{i}", i / 10, "a") for i in range(5)] + [
        example(f"b{i}", f"p b{i}", i / 10, "b") for i in range(2)
    ]
    kept, drops = cap_categories(examples, max_per_category=3, balance=False)
    assert [e.interaction_id for e in kept] == ["a2", "a3", "a4", "b0", "b1"]
    assert drops == {"a": 2}
    kept, drops = cap_categories(examples, max_per_category=None, balance=True)
    assert sorted(e.interaction_id for e in kept) == ["a3", "a4", "b0", "b1"]


def test_openai_default_epochs_rule() -> None:
    assert openai_default_epochs(10) == 10  # 100 // 10
    assert openai_default_epochs(2) == 25  # capped
    assert openai_default_epochs(1000) == 3
    assert openai_default_epochs(20_000) == 1


def test_build_redacts_dedups_pairs_and_writes_a_card(store: Store, config: Config) -> None:
    seed(store)
    add(store, "Mail jane@corp.io the layout", '{"to": "jane@corp.io"}')
    near = json.dumps({"type": "FRAME", "name": "screen 3"})
    add(store, "Design screen number 3 with a blue header!", near, reward=0.5)
    add(store, "Make a login page", '{"type": "BAD"}', corrected_response='{"type": "LOGIN"}')
    dataset = build_dataset(store, config)
    stats = dataset.stats
    assert stats["redactions"] == {"enabled": True, "counts": {"email": 2}}
    assert stats["duplicates"]["near"] == 1 and stats["drop_reasons"]["near_duplicate"] == 1
    assert sum(stats["preference_pairs"].values()) == 1
    assert stats["cost_estimate"]["openai_default_epochs"] == openai_default_epochs(
        stats["counts"]["train"]
    )
    everything = json.dumps(load_split(dataset, "train") + load_split(dataset, "eval"))
    assert "jane@corp.io" not in everything and "contact@example.com" in everything
    folder = Path(dataset.path)
    card = json.loads((folder / "card.json").read_text())
    assert card["coverage"]["train"] and card["tokens"]["histogram"]
    markdown = (folder / "CARD.md").read_text()
    for heading in ("## Sources", "## Filters", "## Duplicates", "## PII replaced", "## Coverage",
                    "## Tokens", "## Training cost estimate"):  # fmt: skip
        assert heading in markdown
    assert "| email | 2 |" in markdown


def test_show_and_diff(store: Store, config: Config) -> None:
    seed(store, 12)
    first = build_dataset(store, config)
    add(store, "A brand new calendar request for the team", '{"type": "CAL"}')
    second = build_dataset(store, config)
    _, card, markdown = show_version(store, "layout@v2")
    assert card["version"] == 2 and markdown.startswith("# layout@v2")
    changes = diff_refs(store, first.label, second.label)
    assert changes["examples"]["added"] == 1 and changes["examples"]["removed"] == 0
    assert changes["counts"]["total"] == [12, 13]
    runner = CliRunner()
    config_path = Path(config.workspace).parent / "tuneloop.toml"
    config_path.write_text(f'workspace = "{config.workspace}"\ntask = "layout"\n')
    result = runner.invoke(app, ["dataset", "diff", "layout@v1", "layout@v2", "-c",
                                 str(config_path)])  # fmt: skip
    assert result.exit_code == 0 and "+1 added" in result.output
    result = runner.invoke(app, ["dataset", "show", "layout@1", "-c", str(config_path)])
    assert result.exit_code == 0 and "## Coverage" in result.output


TRL_COLUMNS = {
    "openai": {"messages"},
    "together": {"messages"},
    "sharegpt": {"conversations"},
    "alpaca": {"instruction", "input", "output"},
    "prompt-completion": {"prompt", "completion"},
    "dpo": {"input", "preferred_output", "non_preferred_output"},
    "parquet": {"messages"},
    "hf": {"messages"},
}


@pytest.mark.parametrize("fmt", sorted(TRL_COLUMNS))
def test_export_loads_with_datasets_and_passes_the_validator(
    store: Store, config: Config, tmp_path: Path, fmt: str
) -> None:
    datasets = pytest.importorskip("datasets")
    seed(store, 12)
    add(store, "Call 415-555-2671 about the login page", '{"type": "BAD"}',
        corrected_response='{"type": "LOGIN"}')  # fmt: skip
    build_dataset(store, config)
    out = tmp_path / "export"
    report = export_version(store, config, "layout@1", fmt, out)
    if fmt == "hf":
        loaded = datasets.load_from_disk(str(out))
        assert set(loaded) == {"train", "eval"}
        train = loaded["train"]
    else:
        builder = "parquet" if fmt == "parquet" else "json"
        train = datasets.load_dataset(builder, data_files=report.files["train"], split="train")
    assert TRL_COLUMNS[fmt] <= set(train.column_names)
    assert len(train) == report.examples["train"] > 0
    if fmt in ("openai", "parquet", "hf"):  # TRL's conversational layout
        assert {m["role"] for m in train[0]["messages"]} <= {"system", "user", "assistant"}
    validation = validate_path(report.files["train"], ValidateOptions(expect_json=True))
    assert validation.errors == 0, [str(f) for f in validation.findings]
    text = json.dumps(train.to_list())
    assert "415-555-2671" not in text


def test_export_without_pairs_and_unknown_format(store: Store, config: Config,
                                                 tmp_path: Path) -> None:  # fmt: skip
    from tuneloop.errors import InputError

    seed(store, 6)
    build_dataset(store, config)
    with pytest.raises(InputError, match="no preference pairs"):
        export_version(store, config, "layout@1", "dpo", tmp_path / "x")
    with pytest.raises(InputError, match="unknown export format"):
        export_version(store, config, "layout@1", "csv", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_store_keeps_paths_relative_to_the_workspace(store: Store, config: Config) -> None:
    from sqlalchemy import select

    from tuneloop.curate import resolve_dataset
    from tuneloop.store import Dataset

    seed(store, 6)
    built = build_dataset(store, config)
    with store.session() as session:
        stored = session.scalar(select(Dataset.path))
    assert stored == "artifacts/datasets/layout/v1"
    assert Path(built.path).is_absolute() and Path(built.path, "train.jsonl").is_file()
    elsewhere = config.workspace.parent / "moved"
    config.workspace.rename(elsewhere)  # the same store, seen from another machine's folder
    found = resolve_dataset(store, "layout@1", workspace=elsewhere)
    assert len(load_split(found, "train")) + len(load_split(found, "eval")) == 6


def test_split_is_stratified_by_category() -> None:
    from tuneloop.curate import split_examples

    examples = [
        Example(
            f"{c}{i}",
            [{"role": "user", "content": f"prompt {c} {i}"},
             {"role": "assistant", "content": f'{{"answer": "{c}{i}"}}'}],
            category=c,
        )
        for c in "abcdef"
        for i in range(3)
    ]  # fmt: skip
    for seed in ("s1", "s2", "s3"):
        train, held_out = split_examples(examples, eval_fraction=0.1, seed=seed)
        assert {e.category for e in held_out} == set("abcdef")
        assert {e.category for e in train} == set("abcdef")
        plain = split_examples(examples, eval_fraction=0.1, seed=seed, stratify=False)[1]
        assert len(plain) <= len(held_out)


def test_turning_redaction_off_is_explicit_and_on_the_card(store: Store, config: Config) -> None:
    seed(store, 6)
    add(store, "Mail jane@corp.io the layout", '{"to": "jane@corp.io"}')
    config.curate.redact_pii = False
    dataset = build_dataset(store, config)
    assert dataset.stats["redactions"] == {"enabled": False, "counts": {}}
    assert "jane@corp.io" in json.dumps(load_split(dataset, "train") + load_split(dataset, "eval"))
    assert "Redaction was turned off" in (Path(dataset.path) / "CARD.md").read_text()
    out = Path(config.workspace).parent / "export"
    report = export_version(store, config, "layout@1", "openai", out)  # export still redacts
    assert report.redactions["email"] == 2
    assert (
        "jane@corp.io" not in (out / "train.jsonl").read_text() + (out / "eval.jsonl").read_text()
    )


def test_strict_build_refuses_invalid_examples(store: Store, config: Config) -> None:
    from tuneloop.errors import InputError

    seed(store, 4)
    add(store, "   ", '{"type": "FRAME"}')  # an empty prompt: dropped, or refused when strict
    assert build_dataset(store, config).stats["counts"]["total"] == 4
    config.curate.strict = True
    with pytest.raises(InputError, match="1 invalid example"):
        build_dataset(store, config)


def test_export_and_validate_report_progress(store: Store, config: Config) -> None:
    seed(store, 6)
    build_dataset(store, config)
    out = Path(config.workspace).parent / "export"
    calls: list[tuple[int, int]] = []
    report = export_version(
        store, config, "layout@1", "openai", out, progress=lambda d, t: calls.append((d, t))
    )
    total = report.examples["train"] + report.examples["eval"]
    assert calls[-1] == (total, total)
    checked: list[int] = []
    validated = validate_path(out, progress=checked.append)
    assert checked[-1] == validated.entries == total
    assert count_lines(out) == total
