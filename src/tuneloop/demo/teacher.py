"""A programmatic teacher that plays the frontier model of the demo.

It answers layout prompts with the reference layout, and, like a real big model, it is not
perfect: a share of its answers are truncated (invalid JSON) or describe the wrong kind of
screen. Users notice those, their feedback marks them, and curation must keep them out.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from tuneloop.demo.layouts import (
    CATEGORIES,
    ScreenRequest,
    dumps,
    generate_layout,
    parse_request,
)

FLAW_RATE = 0.2


@dataclass
class Teacher:
    """Deterministic for a seed; ``flaw_rate`` of answers are broken in one of two ways."""

    seed: int = 0
    flaw_rate: float = FLAW_RATE
    _calls: dict[str, int] = field(default_factory=dict)

    def __call__(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        attempt = self._calls.get(prompt, 0)
        self._calls[prompt] = attempt + 1
        digest = hashlib.sha256(f"{self.seed}:{attempt}:{prompt}".encode()).digest()
        rng = random.Random(digest)
        request = parse_request(prompt)
        flaw = None
        if rng.random() < self.flaw_rate:
            flaw = rng.choice(["truncated", "wrong_screen"])
        if flaw == "wrong_screen":
            wrong = rng.choice([c for c in CATEGORIES if c != request.category])
            request = ScreenRequest(wrong, request.platform, request.subject)
        text = dumps(generate_layout(request))
        if flaw == "truncated":
            text = text[: rng.randint(len(text) // 3, len(text) - 10)]
        return {
            "text": text,
            "model": "demo-teacher",
            # A frontier model's price, so cost comparisons in the demo are meaningful:
            # $3 per 1M input tokens and $15 per 1M output tokens, ~4 characters a token.
            "prompt_tokens": sum(len(m["content"]) for m in messages) // 4,
            "completion_tokens": len(text) // 4,
            "cost_usd": (sum(len(m["content"]) for m in messages) / 4 * 3 + len(text) / 4 * 15)
            / 1e6,
            "flaw": flaw,
        }


_default = Teacher()


def respond(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``callable:tuneloop.demo.teacher:respond`` provider of the default config."""
    return _default(messages)
