"""The demo's varied synthetic wordings: new phrasings, never the ones the demo evaluates on."""

from __future__ import annotations

import json
import re

from tuneloop.demo.layouts import (
    HELD_OUT_TEMPLATES,
    PROMPT_TEMPLATES,
    SYSTEM_PROMPT,
    parse_request,
    prompt_for,
)
from tuneloop.demo.simulate import random_requests
from tuneloop.demo.varier import vary_requests
from tuneloop.providers import CallableProvider
from tuneloop.synth import vary_prompts


def _pattern(template: str) -> re.Pattern[str]:
    """A template as a regex: its fixed words in order, any text where a field goes."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".*?".join(re.escape(part.strip()) for part in parts), re.IGNORECASE)


HELD_OUT = [_pattern(template) for template in HELD_OUT_TEMPLATES]
TEMPLATED = [_pattern(template) for template in PROMPT_TEMPLATES]


def test_varied_wordings_are_new_and_never_the_held_out_phrasings() -> None:
    examples = [
        {
            "id": str(index),
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt_for(request, template)},
                {"role": "assistant", "content": json.dumps({"screen": index})},
            ],
        }
        for index, (request, template) in enumerate(random_requests(300, seed=3))
    ]
    report = vary_prompts(
        CallableProvider(vary_requests, name="demo-varier"), examples, per_example=3
    )
    assert not report.failures
    assert len(report.examples) == 3 * len(examples)
    wordings = set()
    for variation in report.examples:
        request = variation.messages[-2]["content"]
        wordings.add(request)
        assert not any(pattern.fullmatch(request) for pattern in HELD_OUT), request
        assert not any(pattern.fullmatch(request) for pattern in TEMPLATED), request
        # The varied request still asks for the original's screen, answer kept.
        original = examples[int(variation.parent)]["messages"]
        assert parse_request(request) == parse_request(original[1]["content"])
        assert variation.messages[-1] == original[-1]
        assert variation.messages[0] == original[0]
    assert len(wordings) > 2 * len(examples)  # varied, not one rewording repeated


def test_the_patterns_catch_what_they_stand_for() -> None:
    [request, *_] = [request for request, _ in random_requests(1, seed=0)]
    for index, pattern in enumerate(HELD_OUT):
        held_out = HELD_OUT_TEMPLATES[index].format(**request.__dict__)
        assert pattern.fullmatch(held_out)
