"""PII redaction: every kind, consistent placeholders, look-alikes left alone, files and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneloop.cli.app import app
from tuneloop.curate.pii import Redactor, iban_ok, luhn_ok


def redact(text: str) -> tuple[str, dict[str, int]]:
    value, counts = Redactor().redact_example(text)
    return value, dict(counts)


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+x@mail.acme.io now", "write to contact@example.com now", "email"),
        ("call (415) 555-2671 today", "call +1 (555) 000-0000 today", "phone"),
        ("call +44 20 7946 0958", "call +1 (555) 000-0000", "phone"),
        ("call 415.555.2671", "call +1 (555) 000-0000", "phone"),
        ("my number is 4155552671", "my number is +1 (555) 000-0000", "phone"),
        ("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok", "credit_card"),
        ("card 5500-0000-0000-0004", "card [CREDIT_CARD]", "credit_card"),
        ("ssn 123-45-6789.", "ssn [SSN].", "ssn"),
        ("from 203.0.113.9:443", "from 192.0.2.1:443", "ipv4"),
        ("host fe80::1ff:fe23:4567:890a up", "host 2001:db8::1 up", "ipv6"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN] ok", "iban"),
        ("iban GB82WEST12345698765432", "iban [IBAN]", "iban"),
        (
            "https://x.io/cb?access_token=abc123&page=2",
            "https://x.io/cb?access_token=[REDACTED]&page=2",
            "url_token",
        ),
        ("use sk-proj-abcdefghijklmnopqrstuvwx1234", "use [SECRET]", "secret"),
        ("AKIAIOSFODNN7EXAMPLE is the key", "[SECRET] is the key", "secret"),
        ("password: hunter2hunter", "password: [SECRET]", "secret"),
        ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer [SECRET]", "secret"),
        ("I live at 42 Baker Street.", "I live at [ADDRESS]", "address"),
    ],
)
def test_each_kind_is_replaced(text: str, expected: str, kind: str) -> None:
    redacted, counts = redact(text)
    assert redacted == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "upgrade to version 10.0.0.1 or v2.3.4",
        "released 2024-01-15, meeting 12:30:45",
        "order #4111 1111 1111 1111 shipped",
        "order number 555-123-4567 is late",
        "room 1204, floor 12, build 4.2.1",
        "card 4111 1111 1111 1112 (fails Luhn)",
        "IBAN DE00 3704 0044 0532 0130 00 (bad checksum)",
        "ssn 000-12-3456 and 666-12-3456 are never issued",
        "mac 00:1a:2b:3c:4d:5e and ratio 3:2",
        "see https://example.com/docs?page=2&q=tokens",
        "user id 4155552671 logged in",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert redact(text) == (text, {})


def test_same_value_same_placeholder_within_an_example() -> None:
    example = {
        "messages": [
            {"role": "user", "content": "mail a@x.io and b@x.io, call 415-555-2671"},
            {"role": "assistant", "content": "Sent to A@x.io; b@x.io next; 415-555-2671 called"},
        ]
    }
    value, counts = Redactor().redact_example(example)
    assert value["messages"][0]["content"] == (
        "mail contact@example.com and contact2@example.com, call +1 (555) 000-0000"
    )
    assert value["messages"][1]["content"] == (
        "Sent to contact@example.com; contact2@example.com next; +1 (555) 000-0000 called"
    )
    assert counts == {"email": 4, "phone": 2}
    # A new example starts numbering again.
    other, _ = Redactor().redact_example("b@x.io")
    assert other == "contact@example.com"


def test_metadata_ids_are_stripped_and_kinds_can_be_limited() -> None:
    example = {"messages": [], "user_id": "u1", "metadata": {"conversation_id": "c", "x": 1}}
    value, counts = Redactor().redact_example(example)
    assert value == {"messages": [], "metadata": {"x": 1}}
    assert counts == {"metadata_id": 2}
    only_email = Redactor(["email"])
    assert only_email.redact_example("a@b.io 415-555-2671")[0] == "contact@example.com 415-555-2671"
    with pytest.raises(ValueError, match="unknown PII kind"):
        Redactor(["emails"])


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE00370400440532013000")


def test_already_redacted_text_is_stable() -> None:
    once, _ = redact("a@b.io, 415-555-2671, 10.1.2.3, 4111 1111 1111 1111")
    assert redact(once) == (once, {})


def test_redact_command_writes_the_same_format_atomically(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": "I am bob@corp.io"},
                {"role": "assistant", "content": "Hi bob@corp.io"},
            ],
            "user_id": "u7",
        },
        {
            "messages": [
                {"role": "user", "content": "nothing here"},
                {"role": "assistant", "content": "ok"},
            ]
        },
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["dataset", "redact", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 entries, 1 changed" in result.output and "email 2" in result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0] == {
        "messages": [
            {"role": "user", "content": "I am contact@example.com"},
            {"role": "assistant", "content": "Hi contact@example.com"},
        ]
    }
    assert written[1] == rows[1]

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(rows[0]) + "\n{oops\n")
    target = tmp_path / "never.jsonl"
    result = CliRunner().invoke(app, ["dataset", "redact", str(broken), "--out", str(target)])
    assert result.exit_code != 0 and not target.exists()
    assert "broken.jsonl:2: json_parse" in str(result.exception)


@pytest.mark.slow
def test_presidio_pass_finds_names_businesses_and_places() -> None:
    pytest.importorskip("presidio_analyzer")
    from tuneloop.curate.pii import presidio_finder

    redactor = Redactor(ner=presidio_finder())
    text = "John Smith from Microsoft flew to Berlin; mail john@x.io"
    assert redactor.redact_example(text)[0] == (
        "[PERSON_NAME] from [BUSINESS_NAME] flew to [ADDRESS]; mail contact@example.com"
    )
