"""Pipeline files: every mistake is refused before any call, naming file, step and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.errors import InputError
from tuneloop.synth import load_pipeline

GOOD = """
name = "support"
task = "support"
vars = { topic = ["billing", "shipping"] }

[[steps]]
name = "idea"
provider = "callable:synth_helpers:idea"
prompt = "A customer question about {{ topic }}"

[[steps]]
name = "answer"
provider = ["openai:gpt-4o-mini", "together:meta-llama/Llama-3-8b"]
prompt = "Answer: {{ idea }}"
gates = { min_words = 3 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


KEYS = {"OPENAI_API_KEY": "k", "TOGETHER_API_KEY": "k"}


def test_a_good_pipeline_loads(tmp_path: Path) -> None:
    pipeline = load_pipeline(write(tmp_path, GOOD), environ=KEYS)
    assert [step.name for step in pipeline.steps] == ["idea", "answer"]
    assert pipeline.steps[1].members == ["openai:gpt-4o-mini", "together:meta-llama/Llama-3-8b"]
    assert pipeline.answer_step.name == "answer"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("{{ idea }}", "{{ ideas }}"), "step 'answer', field 'prompt': variable 'ideas' is never"),
        (
            ("A customer question about {{ topic }}", "{{ answer }}"),
            "step 'idea', field 'prompt': step 'answer' runs later",
        ),
        (("openai:gpt-4o-mini", "opnai:gpt-4o-mini"), "field 'provider': unknown provider spec"),
        (("gates = { min_words = 3 }", "gates = { min_words = 0 }"), "step 'answer', field"),
        (
            ('provider = "callable:synth_helpers:idea"', 'provider = "callable:nope:x"'),
            "step 'idea', field 'provider'",
        ),
        (
            ("gates = { min_words = 3 }", 'gates = { min_words = 3 }\n[output]\nstep = "final"'),
            "output, field 'step': unknown step 'final'",
        ),
        (('[[steps]]\nname = "answer"', '[[steps]]\nname = "idea"'), "a second step"),
    ],
)
def test_mistakes_are_refused_naming_file_step_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    text = GOOD.replace(*change)
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_pipeline(path, environ=KEYS)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_a_missing_key_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"step 'answer', field 'provider'.*TOGETHER_API_KEY"):
        load_pipeline(write(tmp_path, GOOD), environ={"OPENAI_API_KEY": "k"})


def test_not_toml_and_unknown_fields(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid TOML"):
        load_pipeline(write(tmp_path, "name = "), environ=KEYS)
    with pytest.raises(InputError, match=r"step 'idea', field 'fanout'"):
        load_pipeline(write(tmp_path, GOOD.replace('name = "idea"', 'name = "idea"\nfanout = 2')))


def test_limits_must_name_a_provider_a_step_uses(tmp_path: Path) -> None:
    limit = '\nlimits = { "openai:gpt-4o" = { rpm = 5 } }'
    text = GOOD.replace('task = "support"', 'task = "support"' + limit)
    with pytest.raises(InputError, match=r"limits, field 'openai:gpt-4o': no step uses"):
        load_pipeline(write(tmp_path, text), environ=KEYS)


def test_limits_wrap_the_chain_member_they_name(tmp_path: Path) -> None:
    from tuneloop.providers import FallbackChain
    from tuneloop.synth.limits import Limited, RateLimiter
    from tuneloop.synth.runner import build_step_provider

    limit = '\nlimits = { "openai:gpt-4o-mini" = { rpm = 5, tpm = 9000 } }'
    pipeline = load_pipeline(
        write(tmp_path, GOOD.replace('task = "support"', 'task = "support"' + limit)),
        environ=KEYS,
    )
    limiters: dict[str, RateLimiter] = {}
    provider = build_step_provider(pipeline.steps[1], pipeline, limiters)
    assert isinstance(provider, FallbackChain)
    first, second = provider.members
    assert isinstance(first, Limited) and first.limiter is limiters["openai:gpt-4o-mini"]
    assert (first.limiter.rpm, first.limiter.tpm) == (5, 9000)
    assert not isinstance(second, Limited)
