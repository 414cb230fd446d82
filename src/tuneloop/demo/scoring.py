"""What the demo's numbers mean: eval sets that measure learning, and the scores a user reads.

The eval split already shares no prompt and no answer with training (curate splits by group).
On top of it the demo asks every request twice: in a phrasing the training data also uses
("seen wording", with an answer it never saw) and in a phrasing no training example uses ("new
wording"). A student that only recognises its training templates shows it in the second row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneloop.demo.layouts import (
    ScreenRequest,
    held_out_prompt,
    parse_request,
    screen_match,
    validation_score,
)
from tuneloop.evaluate import bootstrap_mean
from tuneloop.jsontext import dumps_canonical, parse_json

SEEN = "seen"
NEW = "new"
WORDINGS = (SEEN, NEW)


def _user_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")


def _answer_key(text: str) -> str:
    parsed = parse_json(text)
    return dumps_canonical(parsed.value) if parsed.ok else " ".join(text.split())


def eval_sets(eval_records: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` distinct eval requests in their own wording, then each in a held-out wording.

    Every example carries ``metadata.wording`` (seen | new) and the request's parts, so results
    can be broken down and scored as "the requested screen".
    """
    picked: list[Mapping[str, Any]] = []
    answers: set[str] = set()
    for record in eval_records:
        answer = _answer_key(str(record["messages"][-1].get("content", "")))
        if answer in answers:
            continue  # one phrasing per request: the other phrasings would repeat the answer
        answers.add(answer)
        picked.append(record)
        if len(picked) == count:
            break
    seen: list[dict[str, Any]] = []
    new: list[dict[str, Any]] = []
    for index, record in enumerate(picked):
        messages = list(record["messages"])
        request = parse_request(_user_prompt(messages))
        parts: dict[str, Any] = {
            "category": request.category,
            "platform": request.platform,
            "subject": request.subject,
        }
        seen.append({"messages": messages, "metadata": {"wording": SEEN, **parts}})
        reworded = [
            {**m, "content": held_out_prompt(request, index)} if m.get("role") == "user" else m
            for m in messages
        ]
        new.append({"messages": reworded, "metadata": {"wording": NEW, **parts}})
    return seen + new


def answers_in_training(
    train_records: Sequence[Mapping[str, Any]], eval_records: Sequence[Mapping[str, Any]]
) -> float:
    """Share of eval answers that also occur (as JSON values) among the training answers."""
    if not eval_records:
        return 0.0
    trained = {_answer_key(str(r["messages"][-1].get("content", ""))) for r in train_records}
    leaked = sum(
        _answer_key(str(r["messages"][-1].get("content", ""))) in trained for r in eval_records
    )
    return leaked / len(eval_records)


def score_group(examples: Sequence[Mapping[str, Any]], results: Sequence[Any]) -> dict[str, Any]:
    """Valid JSON, the requested screen (category and platform right), similarity, errors."""
    n = len(examples)
    if n == 0:
        return {"n": 0}
    valid = category = platform = errors = 0
    similarity = 0.0
    right: list[bool] = []
    for example, result in zip(examples, results, strict=True):
        scores = result.scores or {}
        if scores.get("error"):
            errors += 1
        similarity += float(scores.get("similarity") or 0.0)
        parsed = parse_json(result.output or "")
        if not parsed.ok:
            right.append(False)
            continue
        valid += 1
        meta = example["metadata"]
        request = ScreenRequest(meta["category"], meta["platform"], meta["subject"])
        category_right, platform_right = screen_match(request, parsed.value)
        well_formed = validation_score(parsed.value) == 1.0
        category += category_right
        platform += platform_right
        right.append(category_right and platform_right and well_formed)
    estimate = bootstrap_mean(right)
    return {
        "n": n,
        "errors": errors,
        "valid_json_rate": valid / n,
        "right_screen_rate": sum(right) / n,
        # A share of a few dozen requests is coarse: the 95 % interval says how coarse.
        "right_screen_interval": [estimate.low, estimate.high],
        "category_rate": category / n,
        "platform_rate": platform / n,
        "similarity": similarity / n,
    }


def score_by_wording(
    examples: Sequence[Mapping[str, Any]], results: Sequence[Any]
) -> dict[str, dict[str, Any]]:
    """``score_group`` for all examples and for each wording apart."""
    pairs = list(zip(examples, results, strict=True))
    scored = {"all": score_group(examples, results)}
    for wording in WORDINGS:
        group = [(e, r) for e, r in pairs if e["metadata"]["wording"] == wording]
        scored[wording] = score_group([e for e, _ in group], [r for _, r in group])
    return scored
