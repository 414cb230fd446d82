"""A dataset version's card (markdown beside ``card.json``) and the diff of two versions.

The card answers what a team asks before training on a version: how many examples and from
where, what each filter dropped, how long they are (a token histogram, and which tokenizer
counted), which categories and intents are covered, what PII was replaced, how many duplicates
went, and what training would cost per provider.
"""

from __future__ import annotations

from typing import Any

CARD_JSON = "card.json"
CARD_MD = "CARD.md"


def card_data(manifest: dict[str, Any]) -> dict[str, Any]:
    """The card's JSON: the manifest's statistics under stable keys."""
    keys = (
        "name", "version", "task", "content_hash", "counts", "candidates", "dropped",
        "drop_reasons", "sources", "filters", "tokens", "coverage", "coverage_by_intent",
        "redactions", "duplicates", "preference_pairs", "cost_estimate", "files",
    )  # fmt: skip
    return {key: manifest[key] for key in keys if key in manifest}


def render_card(card: dict[str, Any]) -> str:
    """The card as markdown."""
    counts = card.get("counts", {})
    lines = [
        f"# {card.get('name')}@v{card.get('version')} (task {card.get('task')})",
        "",
        f"Content hash `{str(card.get('content_hash', ''))[:16]}`. "
        f"{counts.get('train', 0)} train and {counts.get('eval', 0)} eval examples from "
        f"{card.get('candidates', 0)} candidates ({card.get('dropped', 0)} dropped).",
        "",
        "## Sources",
        "",
        *_table(("source", "examples"), sorted(card.get("sources", {}).items())),
        "",
        "## Filters and what each dropped",
        "",
        *_table(("reason", "dropped"), sorted(card.get("drop_reasons", {}).items())),
    ]
    filters = card.get("filters", {})
    if filters:
        shown = ", ".join(
            f"{key}={filters[key]}"
            for key in ("min_reward", "min_quality", "keep_unrated", "eval_fraction",
                        "split_group", "near_dup_threshold", "max_per_category")
            if key in filters
        )  # fmt: skip
        lines += ["", f"Settings: {shown}."]
    duplicates = card.get("duplicates", {})
    if duplicates:
        lines += [
            "",
            "## Duplicates",
            "",
            f"{duplicates.get('exact', 0)} exact and {duplicates.get('near', 0)} near-duplicates "
            f"removed (MinHash LSH, threshold {duplicates.get('threshold')}); largest cluster "
            f"{duplicates.get('largest_cluster', 1)}.",
        ]
    redactions = card.get("redactions", {})
    lines += ["", "## PII replaced", ""]
    if redactions.get("enabled") is False:
        lines.append("Redaction was turned off for this version.")
    else:
        lines += _table(("kind", "replacements"), sorted(redactions.get("counts", {}).items()))
    lines += ["", "## Coverage", ""]
    coverage = card.get("coverage", {})
    categories = sorted(set(coverage.get("train", {})) | set(coverage.get("eval", {})))
    lines += _table(
        ("category", "train", "eval"),
        [(c, coverage.get("train", {}).get(c, 0), coverage.get("eval", {}).get(c, 0))
         for c in categories],
    )  # fmt: skip
    intents = card.get("coverage_by_intent", {})
    names = sorted(set(intents.get("train", {})) | set(intents.get("eval", {})))
    if names and names != ["(none)"]:
        lines += [""]
        lines += _table(
            ("intent", "train", "eval"),
            [(n, intents.get("train", {}).get(n, 0), intents.get("eval", {}).get(n, 0))
             for n in names],
        )  # fmt: skip
    tokens = card.get("tokens", {})
    lines += [
        "",
        "## Tokens",
        "",
        f"Counted with: {tokens.get('method', 'unknown')}. Train total "
        f"{tokens.get('train', {}).get('total', 0):,} (mean {tokens.get('train', {}).get('mean')},"
        f" p95 {tokens.get('train', {}).get('p95')}, max {tokens.get('train', {}).get('max')}).",
        "",
        *_table(("tokens", "examples"), list(tokens.get("histogram", {}).items())),
    ]
    pairs = card.get("preference_pairs")
    if pairs:
        lines += ["", f"Preference pairs from corrections (for DPO): {pairs.get('train', 0)} "
                  f"train, {pairs.get('eval', 0)} eval."]  # fmt: skip
    cost = card.get("cost_estimate", {})
    if cost:
        approx = "~" if cost.get("estimated_tokens") else ""
        lines += [
            "",
            "## Training cost estimate",
            "",
            f"{approx}{cost.get('training_tokens', 0):,} train tokens; OpenAI's default for this "
            f"size is {cost.get('openai_default_epochs')} epochs.",
            "",
            *_table(
                ("target", f"{cost.get('epochs')} epochs",
                 f"{cost.get('openai_default_epochs')} epochs (OpenAI default)"),
                [(t, f"{approx}${usd:,.2f}",
                  f"{approx}${cost.get('usd_openai_default_epochs', {}).get(t, 0):,.2f}")
                 for t, usd in cost.get("usd", {}).items()],
            ),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def diff_versions(
    old: dict[str, Any],
    new: dict[str, Any],
    old_ids: dict[str, set[str]],
    new_ids: dict[str, set[str]],
) -> dict[str, Any]:
    """What changed between two versions: examples in and out per split, counts, coverage,
    tokens, drops and settings."""
    all_old = set().union(*old_ids.values()) if old_ids else set()
    all_new = set().union(*new_ids.values()) if new_ids else set()
    moved = sum(
        1
        for split, ids in new_ids.items()
        for interaction_id in ids
        if interaction_id in all_old and interaction_id not in old_ids.get(split, set())
    )
    return {
        "from": f"{old.get('name')}@v{old.get('version')}",
        "to": f"{new.get('name')}@v{new.get('version')}",
        "same_content": old.get("content_hash") == new.get("content_hash"),
        "examples": {
            "added": len(all_new - all_old),
            "removed": len(all_old - all_new),
            "kept": len(all_new & all_old),
            "moved_split": moved,
        },
        "counts": _delta(old.get("counts", {}), new.get("counts", {})),
        "coverage": _delta(_flat(old.get("coverage", {})), _flat(new.get("coverage", {}))),
        "drop_reasons": _delta(old.get("drop_reasons", {}), new.get("drop_reasons", {})),
        "train_tokens": _delta(
            {"total": old.get("tokens", {}).get("train", {}).get("total", 0)},
            {"total": new.get("tokens", {}).get("train", {}).get("total", 0)},
        ),
        "settings": {
            key: [old.get("filters", {}).get(key), new.get("filters", {}).get(key)]
            for key in sorted(set(old.get("filters", {})) | set(new.get("filters", {})))
            if old.get("filters", {}).get(key) != new.get("filters", {}).get(key)
        },
    }


def _flat(coverage: dict[str, dict[str, int]]) -> dict[str, int]:
    return {f"{split}:{name}": count for split, names in coverage.items() for name, count in
            names.items()}  # fmt: skip


def _delta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{key: [old, new]}`` for keys whose values differ."""
    return {
        key: [old.get(key, 0), new.get(key, 0)]
        for key in sorted(set(old) | set(new), key=str)
        if old.get(key, 0) != new.get(key, 0)
    }
