"""The demo's stand-in for a frontier model asked to vary prompts (``tuneloop.synth.vary``).

It reads the original request out of the variation prompt and writes new requests for the same
screen from small parts: other verbs and nouns, the details in another order, terse and chatty
lengths, casual and formal tones. It never uses the held-out phrasings the demo evaluates on.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from tuneloop.demo.layouts import parse_request

_ORIGINAL = re.compile(r"Original request:\n(.*?)\n\nAnswer:", re.DOTALL)
_COUNT = re.compile(r"Write (\d+) other requests")
OPENERS = ("", "Hi! ", "Quick one: ", "Hello team, ", "For the next sprint, ", "Urgent: ")
VERBS = ("put together", "mock up", "build", "draft", "come up with", "produce", "make")
NOUNS = ("screen", "view", "page", "UI")
CLOSERS = (
    "",
    " Thanks!",
    " JSON layout only, please.",
    " Keep it to the layout tree.",
    " Answer with the layout JSON and nothing else.",
)


def vary_requests(messages: list[dict[str, Any]]) -> str:
    """A JSON array of new requests for the screen the prompt's original request asks for."""
    prompt = str(messages[-1].get("content", ""))
    match = _ORIGINAL.search(prompt)
    original = match.group(1) if match else prompt
    asked = _COUNT.search(prompt)
    count = int(asked.group(1)) if asked else 3
    request = parse_request(original)
    rng = random.Random(hashlib.sha256(original.encode()).digest())
    parts = {
        "category": request.category,
        "platform": request.platform,
        "subject": request.subject,
    }
    shapes = (
        "{opener}Can you {verb} a {category} {noun} for a {subject} app? Platform: {platform}.",
        "{opener}{subject} app, {platform}: we want the {category} {noun}.{closer}",
        "{opener}Our {subject} product needs a {category} {noun} on {platform} - "
        "please {verb} one.{closer}",
        "{category} {noun} / {platform} / {subject}",
        "{opener}I would be grateful if you could {verb} the {category} {noun} of a {subject} "
        "application targeting {platform}.{closer}",
        "{opener}Please {verb} a {platform} {noun}: {category}, for {subject}.{closer}",
    )
    chosen = rng.sample(shapes, k=min(count, len(shapes)))
    requests = [
        shape.format(
            opener=rng.choice(OPENERS),
            verb=rng.choice(VERBS),
            noun=rng.choice(NOUNS),
            closer=rng.choice(CLOSERS),
            **parts,
        ).strip()
        for shape in chosen
    ]
    return json.dumps([text[0].upper() + text[1:] for text in requests])
