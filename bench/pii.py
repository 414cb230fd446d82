"""PII detection: tuneloop's redactor vs Presidio's analyzer on one labelled corpus.

The corpus is generated here (seeded): emails, phone numbers in several national and
international formats, credit cards (Luhn-valid, with and without separators), IPv4 and IPv6
addresses, IBANs with correct check digits, US SSNs, each in varied sentences, mixed with
look-alike decoys that must NOT be flagged (versions, dates, times, order/room/tracking numbers,
cards and IBANs with wrong checksums, never-issued SSNs, MAC addresses, prices, ISBNs).

Both detectors see the same texts; a prediction counts when it overlaps a gold span of the same
entity. Presidio runs with the largest spaCy English pipeline installed (``en_core_web_lg`` is
not on PyPI; the bench says which one it used) and only the six entities compared here.

    python bench/pii.py [--examples N]

Last line: {"bench": "pii", "unit": "examples/s", "ours": ..., "peer": ..., "ratio": ...,
"recall": {...}, "precision": {...}}.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tuneloop.curate.pii import OFFLINE_SUFFIX_LIST, Redactor, spacy_model

ENTITIES = ("email", "phone", "card", "ip", "iban", "ssn")
OURS_TO_ENTITY = {"email": "email", "phone": "phone", "credit_card": "card", "ipv4": "ip",
                  "ipv6": "ip", "iban": "iban", "ssn": "ssn"}  # fmt: skip
PRESIDIO_TO_ENTITY = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "card",
                      "IP_ADDRESS": "ip", "IBAN_CODE": "iban", "US_SSN": "ssn"}  # fmt: skip


@dataclass
class Example:
    text: str
    gold: list[tuple[int, int, str]]


def luhn_digit(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)])
    if country in ("GB", "NL"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(length - 4)
        )
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(length))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = body + luhn_digit(body)
    style = rng.choice(["space", "dash", "none"])
    if style == "none" or length == 15:
        return digits
    sep = " " if style == "space" else "-"
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def phone(rng: random.Random) -> str:
    area = rng.randint(201, 989)
    exchange = rng.randint(200, 999)
    line = rng.randint(0, 9999)
    return rng.choice(
        [
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"{area}.{exchange}.{line:04d}",
            f"+1 {area} {exchange} {line:04d}",
            f"+1-{area}-{exchange}-{line:04d}",
            f"+44 20 {rng.randint(7000, 8999)} {line:04d}",
            f"+49 30 {rng.randint(100000, 999999)}",
            f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
            f"{rng.randint(10, 99)}",
            f"{area}{exchange}{line:04d}",
            f"1-800-{exchange}-{line:04d}",
        ]
    )


def ssn(rng: random.Random) -> str:
    area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return f"{groups[0]}:{groups[1]}::{groups[6]}:{groups[7]}"


def email(rng: random.Random) -> str:
    first = rng.choice(["jane", "omar", "li.wei", "m.garcia", "sam_k", "ana-maria", "j.smith"])
    domain = rng.choice(["example.org", "acme.io", "mail.co.uk", "uni.edu", "corp.de"])
    return f"{first}{rng.randint(1, 999)}@{domain}"


VALUES = {"email": email, "phone": phone, "card": card, "ip": ip, "iban": iban, "ssn": ssn}
SENTENCES = {
    "email": ["Please reply to {v} before Friday.", "My email is {v}", "cc: {v}; thanks!",
              "Send the invoice to <{v}>."],
    "phone": ["Call me at {v} after 5pm.", "Phone: {v}", "You can reach our office on {v}.",
              "my number is {v}, text first"],
    "card": ["Charge my card {v} please.", "Card number: {v} exp 09/27",
             "I paid with {v} yesterday."],
    "ip": ["The server at {v} is down again.", "Blocked requests from {v}",
           "ssh into {v} and restart nginx"],
    "iban": ["Wire the refund to IBAN {v}.", "Account: {v}", "Bank details {v} (Berlin branch)"],
    "ssn": ["My SSN is {v}.", "social security number {v} on file",
            "Applicant SSN: {v}"],
}  # fmt: skip
DECOYS = [
    "Upgrade to version {a}.{b}.{c} before the release.",
    "The build 4.{a}.{b}.{c} fixed the crash.",
    "Meeting on 2024-0{a}-1{b} at 1{a}:3{b}:0{c}.",
    "Order #{o} shipped on 0{a}/1{b}/2024.",
    "Your order number {a}{b}{c}-{o} is confirmed.",
    "Room {a}{b}0{c}, floor {a}.",
    "Tracking 4111 1111 1111 111{bad}",
    "IBAN DE00 3704 0044 0532 0130 00 is a sample with a wrong checksum.",
    "SSN 000-{a}{b}-{o4} is never issued.",
    "MAC 00:1a:2b:3c:4d:{a}{b}",
    "It costs $1,{a}{b}{c}.99 or EUR {o}.",
    "ISBN 978-3-16-14841{a}-0",
    "The ratio was {a}:{b} and the score {a}{b}-{c}.",
    "Use 12:30 or 4:45pm, PR #{o}, issue {o}.",
]


def make_corpus(count: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    corpus = []
    for _ in range(count):
        parts: list[str] = []
        gold: list[tuple[int, int, str]] = []
        length = 0
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.55:
                entity = rng.choice(ENTITIES)
                value = VALUES[entity](rng)
                sentence = rng.choice(SENTENCES[entity])
                start = length + sentence.index("{v}")
                gold.append((start, start + len(value), entity))
                text = sentence.replace("{v}", value)
            else:
                text = rng.choice(DECOYS).format(
                    a=rng.randint(1, 9), b=rng.randint(0, 9), c=rng.randint(0, 9),
                    o=rng.randint(10000, 99999999), o4=f"{rng.randint(1, 9999):04d}",
                    bad=rng.choice("2345678"),
                )  # fmt: skip
            parts.append(text)
            length += len(text) + 1
        corpus.append(Example(" ".join(parts), gold))
    return corpus


def score(
    corpus: list[Example], predictions: list[list[tuple[int, int, str]]]
) -> tuple[dict[str, float], dict[str, float]]:
    found = {e: 0 for e in ENTITIES}
    total = {e: 0 for e in ENTITIES}
    right = {e: 0 for e in ENTITIES}
    predicted = {e: 0 for e in ENTITIES}
    for example, spans in zip(corpus, predictions, strict=True):
        for start, end, entity in example.gold:
            total[entity] += 1
            if any(k == entity and s < end and start < e for s, e, k in spans):
                found[entity] += 1
        for start, end, entity in spans:
            predicted[entity] += 1
            if any(k == entity and s < end and start < e for s, e, k in example.gold):
                right[entity] += 1
    recall = {e: round(found[e] / total[e], 4) if total[e] else 1.0 for e in ENTITIES}
    precision = {e: round(right[e] / predicted[e], 4) if predicted[e] else 1.0 for e in ENTITIES}
    recall["all"] = round(sum(found.values()) / max(1, sum(total.values())), 4)
    precision["all"] = round(sum(right.values()) / max(1, sum(predicted.values())), 4)
    return recall, precision


def run_ours(corpus: list[Example]) -> tuple[list[list[tuple[int, int, str]]], float]:
    redactor = Redactor(OURS_TO_ENTITY)
    started = time.perf_counter()
    predictions = [
        [(s.start, s.end, OURS_TO_ENTITY[s.kind]) for s in redactor.find(example.text)]
        for example in corpus
    ]
    return predictions, len(corpus) / (time.perf_counter() - started)


def run_presidio(
    corpus: list[Example],
) -> tuple[list[list[tuple[int, int, str]]], float, str]:
    import os

    os.environ.update(OFFLINE_SUFFIX_LIST)  # Presidio's email check would fetch a suffix list
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    model = spacy_model()
    engine = AnalyzerEngine(
        nlp_engine=NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
            }
        ).create_engine(),
        supported_languages=["en"],
    )
    entities = list(PRESIDIO_TO_ENTITY)
    engine.analyze("warm up 415-555-2671", language="en", entities=entities)
    started = time.perf_counter()
    predictions = []
    for example in corpus:
        results = engine.analyze(example.text, language="en", entities=entities)
        predictions.append([(r.start, r.end, PRESIDIO_TO_ENTITY[r.entity_type]) for r in results])
    return predictions, len(corpus) / (time.perf_counter() - started), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = make_corpus(args.examples, args.seed)
    gold = sum(len(e.gold) for e in corpus)
    print(f"corpus: {len(corpus)} examples, {gold} PII values, seed {args.seed}")
    ours_pred, ours_rate = run_ours(corpus)
    peer_pred, peer_rate, model = run_presidio(corpus)
    ours_recall, ours_precision = score(corpus, ours_pred)
    peer_recall, peer_precision = score(corpus, peer_pred)
    print(
        f"{'entity':<8} {'recall ours':>12} {'presidio':>9} {'precision ours':>15} {'presidio':>9}"
    )
    for entity in (*ENTITIES, "all"):
        print(
            f"{entity:<8} {ours_recall[entity]:>12.3f} {peer_recall[entity]:>9.3f} "
            f"{ours_precision[entity]:>15.3f} {peer_precision[entity]:>9.3f}"
        )
    print(f"examples/s: ours {ours_rate:,.0f}, presidio ({model}) {peer_rate:,.0f}")
    print(
        json.dumps(
            {
                "bench": "pii",
                "unit": "examples/s",
                "ours": round(ours_rate, 1),
                "peer": round(peer_rate, 1),
                "ratio": round(ours_rate / peer_rate, 1),
                "peer_name": f"presidio-analyzer with {model}",
                "examples": len(corpus),
                "recall": {"ours": ours_recall, "peer": peer_recall},
                "precision": {"ours": ours_precision, "peer": peer_precision},
            }
        )
    )


if __name__ == "__main__":
    main()
