"""Judges: a model (any provider) grading answers, by rubric or by comparing two.

* ``RubricJudge`` scores an answer 1–10 on each trait of a suite (accuracy, format, …) with a
  one-sentence reason per trait; its ``metrics()`` plug into ``evaluate_provider``.
* ``PairwiseJudge`` asks which of two answers is better, twice, with the answers swapped; a
  verdict that changes with the order is a tie (MT-Bench's rule against position bias).
* Every judge request is answered once: answers are cached by a hash of (judge, request) in
  the store's ``judge_answers`` table (and in memory without a store), so re-running a suite
  costs nothing.
* ``reference_judge`` is a programmatic judge (a ``callable:`` provider) that grades by
  structural similarity to the reference answer, so suites and the demo run offline through
  the same path as a real judge model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from tuneloop.errors import TuneloopError
from tuneloop.evaluate.metrics import structural_similarity, text_similarity, valid_json
from tuneloop.evaluate.ratings import Battle, Winner
from tuneloop.evaluate.runner import Score, split_reference
from tuneloop.jsontext import parse_json
from tuneloop.providers.base import Message, Provider
from tuneloop.store import JudgeAnswer, Store

JUDGE_MAX_TOKENS = 768
_SECTION = re.compile(r"\[(?P<tag>[A-Z ]+)\]\n(?P<body>.*?)\n\[/(?P=tag)\]", re.DOTALL)


class JudgeError(TuneloopError):
    """A judge's answer could not be read (not JSON, a score out of range, a missing trait)."""


@dataclass(frozen=True)
class Trait:
    """One quality a rubric judge scores, with what a 10 means."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Verdict:
    """A pairwise judgement: the winner over both orders, and each order's own verdict."""

    winner: Winner
    first_order: Winner
    second_order: Winner
    reason: str = ""


class JudgeCache:
    """Judge answers by request hash: in the store when one is given, else for this object."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._memory: dict[str, str] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(judge: str, kind: str, messages: Sequence[Message]) -> str:
        payload = json.dumps(
            {"judge": judge, "kind": kind, "messages": list(messages)},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        if key in self._memory:
            return self._memory[key]
        if self.store is not None:
            with self.store.session() as session:
                row = session.get(JudgeAnswer, key)
                if row is not None:
                    self._memory[key] = row.answer
                    return row.answer
        return None

    def put(self, key: str, judge: str, kind: str, answer: str) -> None:
        self._memory[key] = answer
        if self.store is None:
            return
        try:
            with self.store.session() as session:
                session.add(JudgeAnswer(key=key, judge=judge[:300], kind=kind, answer=answer))
        except IntegrityError:
            pass  # another process cached the same request first: same answer, keep theirs

    def ask(self, provider: Provider, kind: str, messages: list[Message]) -> str:
        """The judge's answer to ``messages``, from the cache when it was asked before."""
        key = self.key(provider.name, kind, messages)
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        answer = provider.complete(messages, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0).text
        self.put(key, provider.name, kind, answer)
        return answer


def _prompt_text(prompt: Sequence[Message]) -> str:
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)


def _section(tag: str, body: str) -> str:
    return f"[{tag}]\n{body}\n[/{tag}]"


class RubricJudge:
    """Scores answers 1–10 per trait, with reasons, through any provider."""

    def __init__(
        self,
        provider: Provider,
        traits: Sequence[Trait],
        *,
        cache: JudgeCache | None = None,
        instructions: str = "",
    ) -> None:
        if not traits:
            raise TuneloopError("a rubric judge needs at least one trait")
        self.provider = provider
        self.traits = tuple(traits)
        self.cache = cache or JudgeCache()
        self.instructions = instructions

    def request(
        self, prompt: Sequence[Message], output: str, reference: str | None
    ) -> list[Message]:
        traits = "\n".join(f"- {t.name}: {t.description}".rstrip(": ") for t in self.traits)
        shape = ", ".join(f'"{t.name}": {{"score": 1-10, "reason": "..."}}' for t in self.traits)
        system = (
            "You are a strict grader. Score the ANSWER to the REQUEST on each trait from 1 "
            "(useless) to 10 (perfect), with a one-sentence reason per trait. "
            + (f"{self.instructions} " if self.instructions else "")
            + f"Traits:\n{traits}\nReply with only a JSON object: {{{shape}}}"
        )
        parts = [_section("REQUEST", _prompt_text(prompt))]
        if reference is not None:
            parts.append(_section("REFERENCE", reference))
        parts.append(_section("ANSWER", output))
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": "\n".join(parts)},
        ]

    def score(
        self, prompt: Sequence[Message], output: str, reference: str | None
    ) -> dict[str, Score]:
        """Each trait's score and reason (JudgeError when the judge's answer is unreadable)."""
        answer = self.cache.ask(self.provider, "rubric", self.request(prompt, output, reference))
        parsed = parse_json(answer, lenient=True)
        if not parsed.ok or not isinstance(parsed.value, dict):
            raise JudgeError(f"judge {self.provider.name} did not answer with a JSON object")
        scores = {}
        for trait in self.traits:
            entry = parsed.value.get(trait.name)
            value = entry.get("score") if isinstance(entry, dict) else entry
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 1 <= value <= 10
            ):
                raise JudgeError(
                    f"judge {self.provider.name} gave trait {trait.name!r} no score in 1–10"
                )
            reason = str(entry.get("reason", "")) if isinstance(entry, dict) else ""
            scores[trait.name] = Score(float(value), reason)
        return scores

    def metrics(self, prefix: str = "judge_") -> dict[str, Any]:
        """One user metric per trait (``judge_<trait>``) for ``evaluate_provider``; the judge is
        asked once per example (the other traits come from the cache)."""

        def trait_metric(name: str) -> Any:
            def metric(output: str, reference: str | None, example: Mapping[str, Any]) -> Score:
                prompt, _ = split_reference(example.get("messages") or [])
                return self.score(prompt, output, reference)[name]

            return metric

        return {f"{prefix}{trait.name}": trait_metric(trait.name) for trait in self.traits}


class PairwiseJudge:
    """Which of two answers is better, asked in both orders; disagreement is a tie."""

    def __init__(
        self, provider: Provider, *, cache: JudgeCache | None = None, instructions: str = ""
    ) -> None:
        self.provider = provider
        self.cache = cache or JudgeCache()
        self.instructions = instructions

    def request(
        self, prompt: Sequence[Message], first: str, second: str, reference: str | None
    ) -> list[Message]:
        system = (
            "You are an impartial judge. Decide which of two answers to the REQUEST is better. "
            "Ignore their order and length; judge correctness and usefulness. "
            + (f"{self.instructions} " if self.instructions else "")
            + 'Reply with only a JSON object: {"winner": "A" | "B" | "tie", "reason": "..."}'
        )
        parts = [_section("REQUEST", _prompt_text(prompt))]
        if reference is not None:
            parts.append(_section("REFERENCE", reference))
        parts += [_section("ANSWER A", first), _section("ANSWER B", second)]
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": "\n".join(parts)},
        ]

    def _ask(
        self, prompt: Sequence[Message], first: str, second: str, reference: str | None
    ) -> tuple[str, str]:
        answer = self.cache.ask(
            self.provider, "pairwise", self.request(prompt, first, second, reference)
        )
        parsed = parse_json(answer, lenient=True)
        winner = (
            parsed.value.get("winner") if parsed.ok and isinstance(parsed.value, dict) else None
        )
        choice = str(winner).strip().upper() if winner is not None else ""
        if choice not in ("A", "B", "TIE"):
            raise JudgeError(f"judge {self.provider.name} named no winner (A, B or tie)")
        return choice, str(parsed.value.get("reason", ""))

    def compare(
        self, prompt: Sequence[Message], answer_a: str, answer_b: str, reference: str | None = None
    ) -> Verdict:
        """``model_a`` when ``answer_a`` wins in both orders, ``model_b`` likewise, else tie."""
        first, reason = self._ask(prompt, answer_a, answer_b, reference)
        second, _ = self._ask(prompt, answer_b, answer_a, reference)
        first_winner: Winner = {"A": "model_a", "B": "model_b"}.get(first, "tie")  # type: ignore[assignment]
        second_winner: Winner = {"A": "model_b", "B": "model_a"}.get(second, "tie")  # type: ignore[assignment]
        winner: Winner = first_winner if first_winner == second_winner else "tie"
        return Verdict(winner, first_winner, second_winner, reason)

    def battles(
        self,
        prompts: Sequence[Sequence[Message]],
        outputs: Mapping[str, Sequence[str]],
        references: Sequence[str | None] | None = None,
    ) -> list[Battle]:
        """Every pair of models judged on every example (same order of examples per model)."""
        models = list(outputs)
        if any(len(outputs[m]) != len(prompts) for m in models):
            raise TuneloopError("every model needs an answer for each example to be compared")
        battles = []
        for index, prompt in enumerate(prompts):
            reference = references[index] if references is not None else None
            for i, model_a in enumerate(models):
                for model_b in models[i + 1 :]:
                    verdict = self.compare(
                        prompt, outputs[model_a][index], outputs[model_b][index], reference
                    )
                    battles.append(Battle(model_a, model_b, verdict.winner))
        return battles


def reference_judge(messages: list[Message]) -> str:
    """A programmatic judge for offline use: grades answers by their similarity to the
    reference in the request (structural for JSON, token F1 for text).

    Rubric requests get every trait scored ``1 + 9 × similarity`` (a non-JSON answer to a JSON
    reference scores 1); pairwise requests name the more similar answer, a tie within 0.02.
    """
    text = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    sections = {m.group("tag"): m.group("body") for m in _SECTION.finditer(text)}
    reference = sections.get("REFERENCE")
    if reference is None:
        raise TuneloopError("the reference judge needs a [REFERENCE] section in the request")

    def similarity(answer: str) -> float:
        if valid_json(reference):
            return structural_similarity(answer, reference)
        return text_similarity(answer, reference)

    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    if "ANSWER A" in sections:
        a, b = similarity(sections["ANSWER A"]), similarity(sections["ANSWER B"])
        winner = "tie" if abs(a - b) <= 0.02 else "A" if a > b else "B"
        return json.dumps({"winner": winner, "reason": f"similarity {a:.2f} vs {b:.2f}"})
    value = similarity(sections.get("ANSWER", ""))
    score = max(1, min(10, round(1 + 9 * value)))
    traits = re.findall(r'"([^"]+)": \{"score"', system)
    return json.dumps(
        {t: {"score": score, "reason": f"similarity {value:.2f} to the reference"} for t in traits}
    )
