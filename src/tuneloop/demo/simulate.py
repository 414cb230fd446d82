"""A simulated product: users ask for screens, the teacher answers, users react.

Everything goes through the public capture API (``tl.log`` and ``tl.feedback`` helpers), exactly
as a real app would call it, so the demo exercises the same path as production traffic.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuneloop.demo.layouts import (
    CATEGORIES,
    PLATFORMS,
    PROMPT_TEMPLATES,
    SUBJECTS,
    SYSTEM_PROMPT,
    ScreenRequest,
    dumps,
    generate_layout,
    parse_request,
    prompt_for,
    screen_match,
    validation_score,
)
from tuneloop.jsontext import extract_json
from tuneloop.providers.base import Provider

if TYPE_CHECKING:
    from tuneloop.capture.client import Tuneloop

TENANTS = ("northwind", "globex", "initech", "umbrella")
OPTED_OUT_TENANT = "umbrella"  # the demo config lists it: its calls must never be stored
MAX_REGENERATIONS = 2


@dataclass
class SimulationReport:
    requests: int = 0
    logged: int = 0
    not_stored_opt_out: int = 0
    feedback: Counter[str] = field(default_factory=Counter)


def random_requests(count: int, seed: int) -> list[tuple[ScreenRequest, int]]:
    """Screen requests spread over every category and platform, with varied phrasing."""
    rng = random.Random(seed)
    return [
        (
            ScreenRequest(
                rng.choice(CATEGORIES), rng.choice(list(PLATFORMS)), rng.choice(SUBJECTS)
            ),
            rng.randrange(len(PROMPT_TEMPLATES)),
        )
        for _ in range(count)
    ]


def is_right_answer(request: ScreenRequest, text: str) -> bool:
    """What a user sees at a glance: a layout that renders, of the screen they asked for."""
    layout = extract_json(text)
    return validation_score(layout) == 1.0 and all(screen_match(request, layout))


def simulate_traffic(
    tl: Tuneloop,
    teacher: Provider,
    *,
    count: int,
    task: str,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationReport:
    """Run ``count`` user requests through the teacher and record every reaction."""
    rng = random.Random(seed + 1)
    report = SimulationReport()
    for index, (request, template) in enumerate(random_requests(count, seed), start=1):
        tenant = TENANTS[index % len(TENANTS)]
        session = f"session-{seed}-{index}"
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt_for(request, template)},
        ]
        report.requests += 1
        for attempt in range(MAX_REGENERATIONS + 1):
            completion = teacher.complete(messages)
            interaction_id = tl.log(
                messages,
                completion.text,
                model=completion.model,
                provider=teacher.name,
                task=task,
                tenant=tenant,
                session_id=session,
                metadata={
                    "category": request.category,
                    "platform": request.platform,
                    "subject": request.subject,
                },
                latency_ms=completion.latency_ms,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost_usd=completion.cost_usd,
            )
            if interaction_id is None:
                report.not_stored_opt_out += 1
                break
            report.logged += 1
            if attempt:
                report.feedback["regenerated"] += 1  # detected by capture from the repeat
            _app_validates(tl, interaction_id, completion.text)
            if is_right_answer(request, completion.text):
                _happy_user(tl, interaction_id, completion.text, rng, report)
                break
            if attempt < MAX_REGENERATIONS and rng.random() < 0.4:
                continue  # the user asks again: capture sees the same prompt in the session
            _unhappy_user(tl, interaction_id, request, rng, report)
            break
        if progress is not None:
            progress(index, count)
    return report


def _app_validates(tl: Tuneloop, interaction_id: str, text: str) -> None:
    tl.validated(interaction_id, validation_score(extract_json(text)))


def _happy_user(
    tl: Tuneloop, interaction_id: str, text: str, rng: random.Random, report: SimulationReport
) -> None:
    roll = rng.random()
    if roll < 0.4:
        tl.thumbs_up(interaction_id)
        report.feedback["thumbs_up"] += 1
    elif roll < 0.7:
        tl.saved(interaction_id)
        report.feedback["saved"] += 1
    elif roll < 0.8:
        tl.saved(interaction_id, edited=_small_edit(text))
        report.feedback["saved_with_edits"] += 1
    else:
        report.feedback["no_feedback"] += 1


def _unhappy_user(
    tl: Tuneloop,
    interaction_id: str,
    request: ScreenRequest,
    rng: random.Random,
    report: SimulationReport,
) -> None:
    roll = rng.random()
    if roll < 0.5:
        tl.thumbs_down(interaction_id)
        report.feedback["thumbs_down"] += 1
    elif roll < 0.75:
        tl.abandoned(interaction_id)
        report.feedback["abandoned"] += 1
    else:
        # The user fixes the layout by hand: the fixed version is a training label.
        tl.correct(interaction_id, dumps(generate_layout(request)))
        report.feedback["correction"] += 1


def _small_edit(text: str) -> str:
    """A designer's tweak: a little more breathing room in the content frame."""
    layout: Any = extract_json(text)
    for child in layout.get("children", []):
        if child.get("name") == "Content":
            child["gap"] = child.get("gap", 16) + 4
    return dumps(layout)


def synth_items(count: int, seed: int) -> list[dict[str, str]]:
    """Template prompts for synthetic examples, with the request's parts as metadata."""
    requests = random_requests(count, seed + 7)
    items = []
    for request, template in requests:
        items.append(
            {
                "prompt": prompt_for(request, template),
                "category": request.category,
                "platform": request.platform,
            }
        )
    return items


def layout_validator(item: dict[str, str], text: str) -> float:
    """Synthesis gate: the answer must be a well-formed layout of the screen it was asked for."""
    request = parse_request(item["prompt"])
    return validation_score(extract_json(text)) if is_right_answer(request, text) else 0.0
