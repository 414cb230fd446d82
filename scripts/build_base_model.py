#!/usr/bin/env python
"""Build tuneloop's tiny base model from scratch, fully offline.

tuneloop fine-tunes small "student" models, but this machine cannot download
weights, so the package ships a base model of its own making. This script:

1. builds a corpus from offline material only: Python standard-library
   docstrings, license texts found on disk, and seeded synthetic generic JSON
   (records, name/type/children trees, arrays), plus ~30% chat-formatted
   examples so the model already knows the turn format;
2. trains a byte-level BPE tokenizer and wraps it as a
   ``PreTrainedTokenizerFast`` with a chat template that marks assistant turns
   with ``{% generation %}`` (needed for assistant-only loss masks);
3. trains a few-million-parameter ``LlamaForCausalLM`` with a plain torch loop
   whose schedule is sized to the ``--minutes`` wall-clock budget;
4. saves model, tokenizer, generation config and a model card.

The corpus deliberately contains nothing about UI or screen layout: tuneloop's
demo task is UI-layout JSON generation, and fine-tuning must be what teaches it.

Rebuild with::

    .venv/bin/python scripts/build_base_model.py \
        --out src/tuneloop/assets/base_model --minutes 20
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import math
import platform
import random
import re
import shutil
import sys
import sysconfig
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from tuneloop.evaluate.probes import (
    PROBE_KINDS,
    PROBE_THRESHOLDS,
    ProbeReport,
    probe_tasks,
    pseudo_word,
    reading_task,
    run_probes,
)
from tuneloop.train.precision import cpu_has_fast_bf16

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT]
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

# Format: <|bos|> once, then "<|role|>\n{content}<|end|>\n" per turn. The
# assistant content plus its closing <|end|> sits inside {% generation %} so
# return_assistant_tokens_mask marks exactly the tokens a student must learn.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('Unsupported role: ' + message['role']) }}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|assistant|>\\n' }}"
    "{%- generation %}{{- message['content'] + '<|end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)

# Anything that smells of UI / screen layout is kept out of the corpus.
BANNED = re.compile(
    r"frame|screen|layout|button|component|padding|figma|widget|margin|pixel"
    r"|canvas|viewport|flexbox|tkinter|turtle|curses|window|toolbar|sidebar"
    r"|navbar|dialog|stylesheet|\bgui\b|\bui\b|\bux\b|\bcss\b",
    re.IGNORECASE,
)

# Stdlib sub-trees that are tests, GUI code or vendored material.
SKIP_STDLIB_PARTS = {
    "site-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "__pycache__",
    "curses",
}

Message = dict[str, str]


def is_clean(text: str) -> bool:
    """True when ``text`` has no UI/layout vocabulary (see ``BANNED``)."""
    return BANNED.search(text) is None


def clean_paragraphs(text: str) -> str:
    """Drop the paragraphs of ``text`` that mention banned words."""
    paragraphs = re.split(r"\n\s*\n", text)
    return "\n\n".join(p for p in paragraphs if p.strip() and is_clean(p))


def render_chat(messages: list[Message], add_generation_prompt: bool = False) -> str:
    """Render ``messages`` exactly like ``CHAT_TEMPLATE`` (checked at build)."""
    parts = [BOS]
    for message in messages:
        parts.append(f"{ROLE_TOKENS[message['role']]}\n{message['content']}{EOS}\n")
    if add_generation_prompt:
        parts.append(f"{ASSISTANT}\n")
    return "".join(parts)


# --------------------------------------------------------------------------
# Corpus: stdlib docstrings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Docstring:
    """One documented stdlib object, e.g. ``json.dumps``."""

    qualname: str
    kind: str  # "module" | "class" | "function" | "method"
    signature: str
    text: str

    @property
    def first_paragraph(self) -> str:
        """The summary paragraph, used as the answer in chat examples."""
        return self.text.split("\n\n", 1)[0].strip()

    def as_document(self) -> str:
        """Plain-text rendering used for language-model pre-training."""
        head = self.signature or self.qualname
        return f"{head}\n\n{self.text}"


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a stdlib file (``email/mime/text.py`` -> ...)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def stdlib_files() -> list[Path]:
    """Stdlib ``.py`` files minus tests, GUI packages and site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        if SKIP_STDLIB_PARTS & set(path.relative_to(root).parts):
            continue
        if path.name in {"turtle.py", "__main__.py"} or path.name.startswith("test_"):
            continue
        files.append(path)
    return files


def _signature(qualname: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``name(args)`` with ``self``/``cls`` dropped, as shown in docs."""
    args = node.args
    positional = args.posonlyargs + args.args
    if positional and positional[0].arg in {"self", "cls"}:
        args = ast.arguments(
            posonlyargs=args.posonlyargs[1:] if args.posonlyargs else [],
            args=args.args[1:] if not args.posonlyargs else args.args,
            vararg=args.vararg,
            kwonlyargs=args.kwonlyargs,
            kw_defaults=args.kw_defaults,
            kwarg=args.kwarg,
            defaults=args.defaults,
        )
    try:
        return f"{qualname}({ast.unparse(args)})"
    except Exception:
        return f"{qualname}(...)"


def iter_docstrings(path: Path, module: str) -> Iterator[Docstring]:
    """Yield module/class/function docstrings of one file via ``ast``."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield Docstring(module, "module", "", inspect.cleandoc(doc))

    def walk(node: ast.AST, prefix: str, in_class: bool) -> Iterator[Docstring]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    yield Docstring(name, "class", "", inspect.cleandoc(doc))
                yield from walk(child, name, True)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    kind = "method" if in_class else "function"
                    sig = _signature(name, child)
                    yield Docstring(name, kind, sig, inspect.cleandoc(doc))

    yield from walk(tree, module, False)


def collect_docstrings() -> list[Docstring]:
    """All clean stdlib docstrings (banned paragraphs removed)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    out: list[Docstring] = []
    for path in stdlib_files():
        for doc in iter_docstrings(path, module_name(path, root)):
            text = clean_paragraphs(doc.text)
            if len(text) < 20 or not is_clean(doc.qualname + doc.signature):
                continue
            key = hashlib.sha1(text.encode()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            out.append(Docstring(doc.qualname, doc.kind, doc.signature, text))
    return out


# --------------------------------------------------------------------------
# Corpus: license texts on disk
# --------------------------------------------------------------------------


def license_paths() -> list[Path]:
    """License files: stdlib LICENSE.txt, dist-info licenses, Debian's set."""
    paths = [Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"]
    site = Path(sysconfig.get_paths()["purelib"])
    for pattern in ("*.dist-info/LICEN[CS]E*", "*.dist-info/COPYING*", "*.dist-info/licenses/**/*"):
        paths.extend(sorted(site.glob(pattern)))
    common = Path("/usr/share/common-licenses")
    if common.is_dir():
        paths.extend(sorted(p for p in common.iterdir() if p.is_file()))
    return [p for p in paths if p.is_file()]


def collect_licenses(max_chars_each: int = 20_000) -> list[str]:
    """De-duplicated, cleaned license texts (each truncated to a cap)."""
    seen: set[str] = set()
    out: list[str] = []
    for path in license_paths():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = clean_paragraphs(text.replace("\r\n", "\n")).strip()[:max_chars_each]
        key = hashlib.sha1(" ".join(text.split()).lower().encode()).hexdigest()
        if len(text) < 200 or key in seen:
            continue
        seen.add(key)
        out.append(text)
    return out


# --------------------------------------------------------------------------
# Corpus: synthetic generic JSON
# --------------------------------------------------------------------------


def words(text: str, sep: str | None = None) -> list[str]:
    """Split a compact word list (keeps the vocabularies below readable)."""
    return [w.strip() for w in text.split(sep) if w.strip()]


FIRST = words(
    "Ada Alan Grace Linus Guido Barbara Ken Dennis Margaret Edsger Frances John Mary Tim"
    " Radia Sophie Omar Lena Ravi Yuki Carlos Amara Ines Noah Mia Lucas Zara Hugo Elena Kofi"
)
LAST = words(
    "Lovelace Turing Hopper Torvalds Rossum Liskov Thompson Ritchie Hamilton Dijkstra Allen"
    " Backus Shaw Lee Perlman Wilson Haddad Berg Patel Tanaka Mendes Okafor Silva Martin Rossi"
    " Khan Dubois Novak Mensah Garcia"
)
CITIES = [
    ("Lisbon", "Portugal"), ("Oslo", "Norway"), ("Nairobi", "Kenya"), ("Lima", "Peru"),
    ("Osaka", "Japan"), ("Toronto", "Canada"), ("Madrid", "Spain"), ("Berlin", "Germany"),
    ("Austin", "United States"), ("Dublin", "Ireland"), ("Seoul", "South Korea"),
    ("Cairo", "Egypt"), ("Perth", "Australia"), ("Porto", "Portugal"), ("Lyon", "France"),
    ("Krakow", "Poland"), ("Accra", "Ghana"), ("Mumbai", "India"), ("Bogota", "Colombia"),
]  # fmt: skip
PRODUCT_ADJ = words(
    "Classic Compact Organic Wireless Stainless Bamboo Ceramic Portable Recycled Premium"
    " Everyday Vintage Smart Travel Heavy-duty"
)
PRODUCT_NOUN = words(
    "Kettle Backpack Notebook Lamp Mug Blender Headphones Jacket Teapot Umbrella Keyboard"
    " Thermos Skillet Charger Sneakers Blanket Toaster Bicycle Helmet"
)
CATEGORIES = words("kitchen electronics outdoor office apparel home sports books garden toys")
BOOK_ADJ = words(
    "Silent Hidden Last Broken Golden Distant Forgotten Quiet Burning Endless Northern Secret"
    " Wild Little"
)
BOOK_NOUN = words(
    "River Garden Empire Letters Harbor Orchard Mountain Archive Lighthouse Kingdom Engine"
    " Summer Island Library"
)
GENRES = words(
    "fiction mystery science-fiction fantasy history biography poetry romance thriller travel"
    " philosophy cookbook"
)
PUBLISHERS = words(
    "Harbor Press|Northwind Books|Blue Owl Publishing|Cedar House|Lantern & Co.|Meridian Editions",
    "|",
)
LANGS = words("en fr de es pt ja it nl")
CONDITIONS = words("clear|cloudy|rain|light rain|snow|fog|thunderstorm|windy|drizzle", "|")
DIRECTIONS = words("N NE E SE S SW W NW")
LEVELS = words("DEBUG INFO INFO INFO WARNING ERROR CRITICAL")
LOG_MESSAGES = words(
    "request completed|cache miss for key|user signed in|payment authorized"
    "|retrying connection to database|job finished|disk usage above threshold|token refreshed"
    "|email queued|failed to parse payload|worker started|rate limit exceeded|file uploaded"
    "|order shipped|healthcheck ok",
    "|",
)
SERVICES = words("billing inventory search auth notifications reports gateway scheduler catalog")
STATUSES = words("pending paid shipped delivered cancelled refunded")
DEPARTMENTS = words("Engineering Finance Marketing Sales Support Research Operations Legal")
TEAMS = words("Platform Payments Data Growth Infrastructure Security Mobile Analytics Billing")
TITLES = words(
    "Engineer|Senior Engineer|Manager|Director|Analyst|Accountant|Recruiter|Scientist", "|"
)
FILE_EXT = words("py md txt json toml csv yaml sh cfg log")
DIR_NAMES = words("src docs tests data scripts config assets lib bin notes reports archive")
FILE_STEMS = words("main utils readme setup report notes config schema index data model cli")
MENU_SECTIONS = words("Starters Soups Salads Mains Pasta Desserts Drinks Sides")
DISHES = words(
    "Tomato soup|Caesar salad|Grilled salmon|Mushroom risotto|Lentil curry|Beef stew|Apple pie"
    "|Lemon tart|Mint tea|Espresso|Garlic bread|Falafel wrap|Pad thai|Fish tacos",
    "|",
)
CATEGORY_TREE = {
    "Electronics": ["Phones", "Laptops", "Audio", "Cameras"],
    "Home": ["Kitchen", "Bedding", "Lighting", "Storage"],
    "Outdoor": ["Camping", "Cycling", "Fishing"],
    "Books": ["Fiction", "Science", "Cooking", "History"],
    "Sports": ["Running", "Tennis", "Swimming"],
}
TAGS = words("new sale eco bestseller limited gift imported handmade refurbished seasonal")


class JsonFaker:
    """Seeded generator of generic JSON values (no UI vocabulary)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # ---- small helpers -------------------------------------------------
    def name(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    def date(self) -> str:
        r = self.rng
        return f"{r.randint(2015, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"

    def timestamp(self) -> str:
        r = self.rng
        return (
            f"{self.date()}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
        )

    def money(self, lo: float = 1, hi: float = 300) -> float:
        return round(self.rng.uniform(lo, hi), 2)

    def maybe(self, value: Any, p: float = 0.5) -> Any:
        return value if self.rng.random() < p else None

    def product_name(self) -> str:
        return f"{self.rng.choice(PRODUCT_ADJ)} {self.rng.choice(PRODUCT_NOUN)}"

    def book_title(self) -> str:
        r = self.rng
        return r.choice(
            [
                f"The {r.choice(BOOK_ADJ)} {r.choice(BOOK_NOUN)}",
                f"{r.choice(BOOK_NOUN)} of {r.choice(BOOK_NOUN)}s",
                f"A {r.choice(BOOK_ADJ)} {r.choice(BOOK_NOUN)}",
            ]
        )

    # ---- records -------------------------------------------------------
    def user(self) -> dict[str, Any]:
        r = self.rng
        first, last = r.choice(FIRST), r.choice(LAST)
        city, country = r.choice(CITIES)
        return {
            "id": r.randint(1, 99999),
            "username": f"{first.lower()}{r.randint(1, 999)}",
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "age": r.randint(18, 90),
            "active": r.random() < 0.8,
            "roles": r.sample(["admin", "editor", "viewer", "billing", "support"], r.randint(1, 3)),
            "address": {
                "street": f"{r.randint(1, 400)} {r.choice(BOOK_NOUN)} Street",
                "city": city,
                "country": country,
                "postal_code": f"{r.randint(10000, 99999)}",
            },
            "created_at": self.timestamp(),
            "last_login": self.maybe(self.timestamp(), 0.7),
            "preferences": {"newsletter": r.random() < 0.5, "language": r.choice(LANGS)},
        }

    def order(self, n_items: int | None = None) -> dict[str, Any]:
        r = self.rng
        n = n_items if n_items is not None else r.randint(1, 5)
        items = []
        for _ in range(n):
            qty, price = r.randint(1, 4), self.money(2, 150)
            items.append(
                {
                    "sku": f"SKU-{r.randint(1000, 9999)}",
                    "name": self.product_name(),
                    "quantity": qty,
                    "unit_price": price,
                }
            )
        subtotal = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
        tax = round(subtotal * 0.2, 2)
        city, country = r.choice(CITIES)
        return {
            "order_id": f"ORD-{r.randint(10000, 99999)}",
            "customer_id": r.randint(1, 99999),
            "status": r.choice(STATUSES),
            "items": items,
            "subtotal": subtotal,
            "tax": tax,
            "total": round(subtotal + tax, 2),
            "currency": r.choice(["EUR", "USD", "GBP", "JPY"]),
            "shipping": {
                "method": r.choice(["standard", "express", "pickup"]),
                "city": city,
                "country": country,
            },
            "placed_at": self.timestamp(),
            "paid": r.random() < 0.85,
            "coupon": self.maybe(f"SAVE{r.choice([5, 10, 15, 20])}", 0.3),
        }

    def product(self) -> dict[str, Any]:
        r = self.rng
        stock = r.randint(0, 500)
        return {
            "id": r.randint(1, 99999),
            "sku": f"SKU-{r.randint(1000, 9999)}",
            "name": self.product_name(),
            "category": r.choice(CATEGORIES),
            "price": self.money(),
            "currency": r.choice(["EUR", "USD", "GBP"]),
            "in_stock": stock > 0,
            "stock": stock,
            "tags": r.sample(TAGS, r.randint(0, 3)),
            "rating": round(r.uniform(1, 5), 1),
            "weight_kg": round(r.uniform(0.1, 12), 2),
            "discontinued": r.random() < 0.1,
        }

    def book(self) -> dict[str, Any]:
        r = self.rng
        return {
            "isbn": f"978-{r.randint(0, 9)}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}-"
            f"{r.randint(0, 9)}",
            "title": self.book_title(),
            "authors": [self.name() for _ in range(r.choice([1, 1, 1, 2, 3]))],
            "year": r.randint(1850, 2025),
            "publisher": r.choice(PUBLISHERS),
            "pages": r.randint(80, 1200),
            "genres": r.sample(GENRES, r.randint(1, 3)),
            "language": r.choice(LANGS),
            "rating": round(r.uniform(1, 5), 2),
            "available": r.random() < 0.7,
            "series": self.maybe({"name": self.book_title(), "number": r.randint(1, 7)}, 0.25),
        }

    def weather(self, city: str | None = None) -> dict[str, Any]:
        r = self.rng
        if city is None:
            city = r.choice(CITIES)[0]
        return {
            "station_id": f"WS-{r.randint(100, 999)}",
            "city": city,
            "timestamp": self.timestamp(),
            "temperature_c": round(r.uniform(-20, 40), 1),
            "humidity": r.randint(5, 100),
            "pressure_hpa": round(r.uniform(960, 1045), 1),
            "wind": {"speed_kmh": round(r.uniform(0, 90), 1), "direction": r.choice(DIRECTIONS)},
            "conditions": r.choice(CONDITIONS),
            "precipitation_mm": round(r.uniform(0, 30), 1) if r.random() < 0.4 else 0,
            "alerts": r.sample(["heat", "frost", "storm", "flood"], r.choice([0, 0, 0, 1])),
        }

    def config(self) -> dict[str, Any]:
        r = self.rng
        service = r.choice(SERVICES)
        return {
            "service": service,
            "version": f"{r.randint(0, 4)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
            "debug": r.random() < 0.3,
            "server": {
                "host": r.choice(["0.0.0.0", "127.0.0.1", "localhost"]),
                "port": r.choice([8000, 8080, 5000, 9000, 3000]),
                "workers": r.randint(1, 16),
            },
            "database": {
                "url": f"postgresql://{service}@db.internal:5432/{service}",
                "pool_size": r.randint(2, 50),
                "timeout_s": r.choice([5, 10, 30, 60]),
            },
            "logging": {
                "level": r.choice(LEVELS),
                "handlers": r.sample(["console", "file", "syslog"], r.randint(1, 2)),
            },
            "features": {
                f: r.random() < 0.5
                for f in r.sample(
                    ["beta_search", "fast_export", "new_checkout", "audit_log", "metrics"], 3
                )
            },
            "retries": r.randint(0, 5),
            "allowed_hosts": r.sample(
                ["example.com", "api.example.com", "internal.example.org"], r.randint(1, 3)
            ),
        }

    def log_event(self) -> dict[str, Any]:
        r = self.rng
        level = r.choice(LEVELS)
        failed = level in {"ERROR", "CRITICAL"}
        return {
            "timestamp": self.timestamp(),
            "level": level,
            "logger": f"{r.choice(SERVICES)}.{r.choice(['api', 'worker', 'db', 'cache'])}",
            "message": r.choice(LOG_MESSAGES),
            "context": {
                "request_id": f"{r.getrandbits(48):012x}",
                "user_id": self.maybe(r.randint(1, 99999), 0.6),
                "duration_ms": round(r.uniform(0.5, 2500), 1),
            },
            "exception": {
                "type": r.choice(["ValueError", "TimeoutError", "KeyError", "ConnectionError"]),
                "message": r.choice(LOG_MESSAGES),
            }
            if failed
            else None,
        }

    def api_response(self) -> dict[str, Any]:
        r = self.rng
        if r.random() < 0.2:
            code = r.choice([400, 401, 403, 404, 409, 429, 500, 503])
            return {
                "status": "error",
                "code": code,
                "data": None,
                "error": {
                    "code": r.choice(
                        ["invalid_request", "not_found", "unauthorized", "rate_limited", "internal"]
                    ),
                    "message": r.choice(LOG_MESSAGES),
                },
                "request_id": f"{r.getrandbits(48):012x}",
            }
        maker = r.choice([self.user, self.product, self.book, self.log_event])
        n = r.randint(1, 3)
        total = r.randint(n, 200)
        return {
            "status": "ok",
            "code": 200,
            "data": [maker() for _ in range(n)],
            "pagination": {
                "page": r.randint(1, 5),
                "per_page": n,
                "total": total,
                "next": self.maybe(f"/api/v1/items?page={r.randint(2, 9)}", 0.6),
            },
            "error": None,
            "request_id": f"{r.getrandbits(48):012x}",
        }

    # ---- name/type/children trees -----------------------------------------
    def file_tree(self, depth: int = 0, name: str = "project") -> dict[str, Any]:
        r = self.rng
        children: list[dict[str, Any]] = []
        for _ in range(r.randint(1, 4) if depth < 3 else 0):
            if r.random() < 0.45 and depth < 2:
                children.append(self.file_tree(depth + 1, r.choice(DIR_NAMES)))
            else:
                children.append(
                    {
                        "name": f"{r.choice(FILE_STEMS)}.{r.choice(FILE_EXT)}",
                        "type": "file",
                        "size": r.randint(0, 250_000),
                        "children": [],
                    }
                )
        return {"name": name, "type": "directory", "children": children}

    def org_chart(self, company: str | None = None) -> dict[str, Any]:
        r = self.rng
        departments = []
        for dept in r.sample(DEPARTMENTS, r.randint(1, 3)):
            teams = []
            for team in r.sample(TEAMS, r.randint(1, 2)):
                people = [
                    {
                        "name": self.name(),
                        "type": "employee",
                        "title": r.choice(TITLES),
                        "children": [],
                    }
                    for _ in range(r.randint(1, 3))
                ]
                teams.append(
                    {"name": team, "type": "team", "lead": self.name(), "children": people}
                )
            departments.append(
                {"name": dept, "type": "department", "head": self.name(), "children": teams}
            )
        company = (
            company or f"{r.choice(LAST)} {r.choice(['Labs', 'Group', 'Industries', 'Systems'])}"
        )
        return {"name": company, "type": "company", "children": departments}

    def category_tree(self) -> dict[str, Any]:
        r = self.rng
        tops = []
        for top in r.sample(sorted(CATEGORY_TREE), r.randint(1, 3)):
            subs = [
                {
                    "name": s,
                    "type": "subcategory",
                    "product_count": r.randint(0, 900),
                    "children": [],
                }
                for s in r.sample(CATEGORY_TREE[top], r.randint(1, len(CATEGORY_TREE[top])))
            ]
            tops.append({"name": top, "type": "category", "children": subs})
        return {"name": "All products", "type": "root", "children": tops}

    def menu_tree(self) -> dict[str, Any]:
        r = self.rng
        sections = []
        for section in r.sample(MENU_SECTIONS, r.randint(2, 4)):
            dishes = [
                {
                    "name": d,
                    "type": "dish",
                    "price": self.money(3, 35),
                    "vegetarian": r.random() < 0.4,
                    "children": [],
                }
                for d in r.sample(DISHES, r.randint(1, 4))
            ]
            sections.append({"name": section, "type": "section", "children": dishes})
        return {
            "name": r.choice(["Lunch", "Dinner", "Brunch", "Weekend"]) + " menu",
            "type": "menu",
            "children": sections,
        }

    # ---- arrays and scalars ----------------------------------------------
    def numbers(self) -> Any:
        r = self.rng
        kind = r.randrange(4)
        if kind == 0:
            return [r.randint(-1000, 1000) for _ in range(r.randint(1, 12))]
        if kind == 1:
            return {
                "values": [round(r.uniform(-100, 100), 3) for _ in range(r.randint(1, 8))],
                "unit": r.choice(["ms", "kg", "m", "s", "C"]),
                "missing": None,
            }
        if kind == 2:
            n = r.randint(2, 4)
            return {"matrix": [[r.randint(0, 9) for _ in range(n)] for _ in range(n)]}
        return {
            "flags": [r.random() < 0.5 for _ in range(r.randint(1, 6))],
            "count": r.randint(0, 100),
            "ratio": round(r.random(), 4),
            "note": None,
        }

    def record(self, kind: str) -> Any:
        """One value of the named kind (see ``RECORD_KINDS``)."""
        return getattr(self, kind)()

    def array_of(self, kind: str, n: int) -> list[Any]:
        return [self.record(kind) for _ in range(n)]


RECORD_KINDS = [
    "user",
    "order",
    "product",
    "book",
    "weather",
    "config",
    "log_event",
    "api_response",
    "file_tree",
    "org_chart",
    "category_tree",
    "menu_tree",
    "numbers",
]


def dump(
    value: Any, rng: random.Random, compact: bool | None = None, indent: int | None = None
) -> str:
    """Serialize in compact or indented form (randomly unless specified)."""
    if compact is None:
        compact = rng.random() < 0.4
    if compact:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value, indent=indent or rng.choice([2, 2, 4]), ensure_ascii=False)


def json_document(faker: JsonFaker) -> str:
    """A raw (non-chat) JSON pre-training document, sometimes captioned."""
    r = faker.rng
    kind = r.choice(RECORD_KINDS)
    value: Any = faker.array_of(kind, r.randint(2, 4)) if r.random() < 0.2 else faker.record(kind)
    text = dump(value, r)
    if r.random() < 0.3:
        caption = r.choice(
            [
                f"Example {kind.replace('_', ' ')}:",
                f"Sample {kind.replace('_', ' ')} data",
                f"{kind}.json",
            ]
        )
        text = f"{caption}\n{text}"
    return text


# --------------------------------------------------------------------------
# Corpus: chat examples
# --------------------------------------------------------------------------

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a concise assistant.",
    "Answer with JSON only, no prose.",
    "You are an assistant that explains Python APIs briefly.",
    "Reply with valid JSON.",
]
NOUNS = {
    "user": "a user",
    "order": "an order",
    "product": "a product",
    "book": "a book",
    "weather": "a weather reading",
    "config": "a service configuration",
    "log_event": "a log event",
    "api_response": "an API response",
}
PLURALS = {
    "user": "users",
    "order": "orders",
    "product": "products",
    "book": "books",
    "weather": "weather readings",
    "log_event": "log events",
}
TREES = {
    "file_tree": ["a project directory tree", "a file-system tree"],
    "org_chart": ["an org chart", "a company org chart"],
    "category_tree": ["a product category tree", "a category hierarchy"],
    "menu_tree": ["a restaurant menu", "a menu tree"],
}


def json_chat(faker: JsonFaker) -> list[Message]:
    """A user request for some JSON and an assistant reply that is JSON only."""
    r = faker.rng
    style = r.random()
    compact = r.random() < 0.25
    fmt = (
        r.choice([" Use compact JSON.", " Compact, no whitespace.", " Minified, please."])
        if compact
        else ""
    )
    value: Any
    if style < 0.45:
        kind = r.choice(sorted(NOUNS))
        noun = NOUNS[kind]
        prompt = r.choice(
            [
                f"Give me a JSON record for {noun}.",
                f"Return a JSON object describing {noun}.",
                f"Create {noun} as JSON.",
                f"Generate JSON for {noun}.",
                f"I need {noun} in JSON format.",
            ]
        )
        value = faker.record(kind)
    elif style < 0.6:
        n = r.randint(1, 6)
        value = faker.order(n)
        prompt = r.choice(
            [
                f"Return a JSON object describing an order with {n} items.",
                f"Give me an order with {n} line items as JSON.",
                f"Create a JSON order containing {n} items.",
            ]
        )
    elif style < 0.67:
        city = r.choice(CITIES)[0]
        value = faker.weather(city)
        prompt = r.choice(
            [
                f"Return a JSON weather reading for {city}.",
                f"Give me the weather in {city} as a JSON object.",
            ]
        )
    elif style < 0.82:
        kind = r.choice(sorted(PLURALS))
        n = r.randint(2, 4)
        value = faker.array_of(kind, n)
        prompt = r.choice(
            [
                f"Return a JSON array of {n} {PLURALS[kind]}.",
                f"Give me {n} {PLURALS[kind]} as a JSON list.",
                f"Generate a list of {n} {PLURALS[kind]} in JSON.",
            ]
        )
    elif style < 0.95:
        kind = r.choice(sorted(TREES))
        what = r.choice(TREES[kind])
        value = faker.record(kind)
        prompt = r.choice(
            [
                f"Return {what} as JSON with name, type and children fields.",
                f"Give me {what} as a nested JSON object.",
                f'Build {what} in JSON; each node has "name", "type" and "children".',
            ]
        )
    else:
        value = faker.record(r.choice(RECORD_KINDS))
        source = dump(value, r, compact=not compact)
        prompt = f"Reformat this JSON{' compactly' if compact else ' with indentation'}:\n{source}"
        fmt = ""
    reply = dump(value, r, compact=compact, indent=2)
    return [{"role": "user", "content": prompt + fmt}, {"role": "assistant", "content": reply}]


def doc_chat(doc: Docstring, rng: random.Random) -> list[Message] | None:
    """A question about a stdlib object answered by its docstring summary."""
    answer = doc.first_paragraph
    if (
        not (20 <= len(answer) <= 700)
        or ">>>" in answer
        or doc.qualname.split(".")[-1].startswith("_")
    ):
        return None
    name = doc.qualname
    if doc.kind == "module":
        prompt = rng.choice(
            [
                f"What is the `{name}` module for?",
                f"Describe the `{name}` module.",
                f"What does the {name} module provide?",
            ]
        )
    elif doc.kind == "class":
        prompt = rng.choice(
            [f"What is `{name}`?", f"Describe the class `{name}`.", f"Explain `{name}` briefly."]
        )
    else:
        if doc.signature and rng.random() < 0.15:
            return [
                {"role": "user", "content": f"What is the signature of `{name}`?"},
                {"role": "assistant", "content": f"`{doc.signature}`"},
            ]
        prompt = rng.choice(
            [
                f"What does `{name}` do?",
                f"Explain `{name}` briefly.",
                f"What does {name} do?",
                f"Summarize the docstring of `{name}`.",
            ]
        )
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


ECHO_KEYS = words("name title city label kind owner color status topic code tag group")


def echo_chat(faker: JsonFaker, vocabulary: list[str]) -> list[Message]:
    """Requests whose answer must copy words from the prompt.

    Without these, a model this small never learns to look back at its prompt (no induction
    heads form in a few million tokens), and fine-tuning cannot teach it to follow requests.
    """
    r = faker.rng
    picked = [r.choice(vocabulary) for _ in range(r.randint(2, 7))]
    style = r.random()
    if style < 0.3:
        prompt = r.choice(["Repeat exactly: ", "Say back: ", "Echo these words: "])
        return [
            {"role": "user", "content": prompt + " ".join(picked)},
            {"role": "assistant", "content": " ".join(picked)},
        ]
    if style < 0.55:
        array = picked if r.random() < 0.5 else [word.title() for word in picked]
        prompt = f"Turn these into a JSON array: {', '.join(picked)}."
        if array != picked:
            prompt = f"Turn these into a JSON array of title-case strings: {', '.join(picked)}."
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": dump(array, r, compact=r.random() < 0.5)},
        ]
    keys = r.sample(ECHO_KEYS, k=min(len(picked), r.randint(1, 4)))
    value = {key: word for key, word in zip(keys, picked, strict=False)}
    described = " and ".join(f"{key} {word}" for key, word in value.items())
    prompt = r.choice(
        [
            f"Return a JSON object with {described}.",
            f"Make a JSON record: {described}.",
            f"I need JSON where {described}.",
        ]
    )
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": dump(value, r, compact=r.random() < 0.5)},
    ]


def repeated_span_document(vocabulary: list[str], rng: random.Random) -> str:
    """A random word sequence shown twice: the plainest lesson in copying from context.

    Half the spans are pseudo-words (the training half of ``pseudo_word``'s space), which no
    n-gram statistics can predict: only looking back at the first copy lowers their loss.
    """
    count = rng.randint(6, 40)
    if rng.random() < 0.5:
        span = " ".join(pseudo_word(rng, held_out=False) for _ in range(count))
    else:
        span = " ".join(rng.choice(vocabulary) for _ in range(count))
    return f"{span}\n{span}"


TITLE_PHRASES = ("Capitalise each word: ", "Write in title case: ", "Title-case these words: ")


def reading_chat(vocabulary: list[str], rng: random.Random) -> list[Message]:
    """A prompt-reading task (copy, recall, fill a JSON shape, title-case a copy).

    These are the lessons a base model needs before fine-tuning can teach it a request: the
    answer is in the prompt, so the only way to lower its loss is to read the prompt. Words
    are pseudo-words (never the probes' half) or real corpus words, 60/40.
    """
    pseudo = rng.random() < 0.6

    def word() -> str:
        return pseudo_word(rng, held_out=False) if pseudo else rng.choice(vocabulary)

    roll = rng.random()
    if roll < 0.15:
        picked = [word() for _ in range(rng.randint(1, 5))]
        prompt, answer = (
            rng.choice(TITLE_PHRASES) + " ".join(picked),
            " ".join(w.title() for w in picked),
        )
    else:
        task = reading_task(PROBE_KINDS[int(roll * 100) % len(PROBE_KINDS)], rng, word)
        prompt, answer = task.prompt, task.answer
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def chat_example(
    docs: list[Docstring], faker: JsonFaker, vocabulary: list[str] | None = None
) -> list[Message]:
    """One chat conversation: 1-2 exchanges, optional system prompt."""
    r = faker.rng
    messages: list[Message] = []
    if r.random() < 0.3:
        messages.append({"role": "system", "content": r.choice(SYSTEM_PROMPTS)})
    for _ in range(2 if r.random() < 0.15 else 1):
        exchange = None
        while exchange is None:
            roll = r.random()
            if vocabulary and roll < 0.35:
                exchange = echo_chat(faker, vocabulary)
            elif roll < 0.75:
                exchange = json_chat(faker)
            else:
                exchange = doc_chat(r.choice(docs), r)
        messages.extend(exchange)
    return messages


# --------------------------------------------------------------------------
# Corpus assembly
# --------------------------------------------------------------------------


@dataclass
class Corpus:
    """Rendered training documents with per-source statistics.

    ``scored_from[i]`` is the character offset from which document ``i``'s tokens count in the
    loss (0: all of it). A reading drill counts only its answer, a repeated span only its
    second copy: their other tokens are random pseudo-words that nothing can predict, and
    scoring them buries the one signal that teaches the model to read its context (measured:
    a 2-layer model scored on whole drills copied 0 % of held-out spans after 2.5 M tokens;
    scored on the copies alone, 83 % after 1 M).
    """

    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    scored_from: list[int] = field(default_factory=list)

    def add(self, text: str, source: str, scored_from: int = 0) -> None:
        if not is_clean(text):  # final guard; sources are already filtered
            return
        self.texts.append(text)
        self.sources.append(source)
        self.scored_from.append(scored_from)

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for text, source in zip(self.texts, self.sources, strict=True):
            entry = out.setdefault(source, {"documents": 0, "chars": 0})
            entry["documents"] += 1
            entry["chars"] += len(text)
        return out


def answer_offset(text: str) -> int:
    """Where the (last) assistant reply of a rendered chat begins."""
    marker = f"{ASSISTANT}\n"
    return text.rindex(marker) + len(marker)


def second_copy_offset(text: str) -> int:
    """Where the second copy of a repeated-span document begins."""
    return text.index("\n") + 1


def build_corpus(seed: int, shares: dict[str, float]) -> Corpus:
    """Docstrings + licenses (the prose) and generated sources sized against them.

    ``shares`` gives the target fraction of all characters for each generated source
    (``synthetic_json``, ``chat``, ``reading``, ``repeated_spans``); prose is the rest.
    """
    rng = random.Random(seed)
    faker = JsonFaker(rng)
    corpus = Corpus()
    docs = collect_docstrings()
    for doc in docs:
        corpus.add(f"{BOS}{doc.as_document()}{EOS}", "stdlib_docstrings")
    for text in collect_licenses():
        corpus.add(f"{BOS}{text}{EOS}", "licenses")
    prose_chars = sum(len(t) for t in corpus.texts)
    prose_share = 1.0 - sum(shares.values())
    if prose_share <= 0.05:
        raise SystemExit("the generated shares leave no room for prose; lower them")
    vocabulary = sorted(
        w
        for w in {w for doc in docs[:2000] for w in re.findall(r"[a-z]{3,12}", doc.text)}
        if is_clean(w)
    )
    makers = {
        "synthetic_json": lambda: f"{BOS}{json_document(faker)}{EOS}",
        "chat": lambda: render_chat(chat_example(docs, faker, vocabulary)),
        "reading": lambda: render_chat(reading_chat(vocabulary, rng)),
        "repeated_spans": lambda: f"{BOS}{repeated_span_document(vocabulary, rng)}{EOS}",
    }
    scored_from = {"reading": answer_offset, "repeated_spans": second_copy_offset}
    for source, share in shares.items():
        target, made = prose_chars * share / prose_share, 0
        while made < target:
            text = makers[source]()
            corpus.add(text, source, scored_from[source](text) if source in scored_from else 0)
            made += len(text)
    return corpus


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (no unknown tokens) wrapped for ``transformers``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def check_chat_template(tokenizer: PreTrainedTokenizerFast) -> None:
    """Fail fast if the Jinja template and ``render_chat`` disagree."""
    messages: list[Message] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What does `json.dumps` do?"},
        {"role": "assistant", "content": "Serialize ``obj`` to a JSON formatted ``str``."},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == render_chat(messages), rendered
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == render_chat(messages[:2], add_generation_prompt=True), prompt
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(ids) == messages[-1]["content"] + EOS, tokenizer.decode(ids)


def pack(
    tokenizer: PreTrainedTokenizerFast, texts: list[str], scored_from: list[int]
) -> torch.Tensor:
    """Tokenize documents (special tokens already in the text) into one stream: row 0 the
    token ids, row 1 the labels (the id where the token is scored, else -100)."""
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ids: list[int] = []
    labels: list[int] = []
    for enc, start in zip(encodings, scored_from, strict=True):
        ids.extend(enc.ids)
        scored = (offset[0] >= start for offset in enc.offsets)
        labels.extend(i if keep else -100 for i, keep in zip(enc.ids, scored, strict=True))
    return torch.tensor([ids, labels], dtype=torch.long)


# --------------------------------------------------------------------------
# Model and training
# --------------------------------------------------------------------------


def build_model(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A small Llama (RMSNorm, SwiGLU, RoPE, GQA, tied embeddings)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        max_position_embeddings=1024,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
    )
    return LlamaForCausalLM(config)


class Batches:
    """Non-overlapping ``seq_len`` windows of a (ids, labels) stream, reshuffled per epoch."""

    def __init__(self, stream: torch.Tensor, seq_len: int, seed: int) -> None:
        self.data = windows_of(stream, seq_len)
        n = len(self.data)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.gen)
        self.pos = 0
        self.epochs = 0

    def batch(self, size: int) -> torch.Tensor:
        """``(size, 2, seq_len)``: each window's ids and labels."""
        if self.pos + size > len(self.order):
            self.order = torch.randperm(len(self.order), generator=self.gen)
            self.pos = 0
            self.epochs += 1
        idx = self.order[self.pos : self.pos + size]
        self.pos += size
        return self.data[idx]


def windows_of(stream: torch.Tensor, seq_len: int, limit: int | None = None) -> torch.Tensor:
    """A ``(2, N)`` stream cut into ``(n, 2, seq_len)`` windows."""
    n = stream.shape[1] // seq_len if limit is None else min(limit, stream.shape[1] // seq_len)
    return stream[:, : n * seq_len].view(2, n, seq_len).transpose(0, 1).contiguous()


def lr_at(step: int, warmup: int, total: int, peak: float, floor: float) -> float:
    """Linear warmup then cosine decay to ``floor`` at ``total`` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: LlamaForCausalLM, data: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over all held-out windows (scored tokens only)."""
    model.eval()
    losses = [
        model(input_ids=data[i : i + batch_size, 0], labels=data[i : i + batch_size, 1]).loss.item()
        for i in range(0, len(data), batch_size)
    ]
    model.train()
    return sum(losses) / len(losses)


MEASURE_STEPS = 12  # steps timed before the schedule is first sized
REPLAN_EVERY = 25  # re-size the schedule this often from recent step times
REPLAN_WINDOW = 30  # steps averaged for the step-time estimate
PROBES_PER_KIND_DURING = 20  # quick probe set while training (the card uses the full set)


@dataclass
class TrainResult:
    """What the model card reports about the run."""

    steps: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    train_seconds: float
    epochs: float
    probe_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    stopped_early: bool = False


class ThreadTuner:
    """Switch between 1 and ``max_threads`` intra-op threads by measured step time.

    On a shared 2-core machine two threads are ~2x faster while it is idle but
    ~2x slower while other work runs (threads wait on each other at barriers),
    so the loop probes the other setting for a few steps at the start and every
    ``probe_every`` steps, and keeps whichever was faster recently.
    """

    def __init__(self, max_threads: int, probe_every: int = 60, probe_steps: int = 3) -> None:
        self.current = max_threads
        self.other = 1
        self.probe_every = probe_every
        self.probe_steps = probe_steps
        self.seconds: dict[int, float] = {}

    def apply(self, step: int) -> int:
        """Set and return the thread count for ``step``."""
        probing = self.current != self.other and (
            2 <= step < 2 + self.probe_steps
            or (step >= self.probe_every and step % self.probe_every < self.probe_steps)
        )
        threads = self.other if probing else self.current
        torch.set_num_threads(threads)
        return threads

    def record(self, threads: int, seconds: float) -> None:
        """Update that setting's running step time; keep the faster setting."""
        old = self.seconds.get(threads)
        self.seconds[threads] = seconds if old is None else 0.6 * old + 0.4 * seconds
        if len(self.seconds) == 2:
            best = min(self.seconds, key=self.seconds.__getitem__)
            if best != self.current:
                self.current, self.other = best, self.current


@dataclass
class LoopState:
    """Everything a stopped build needs to continue exactly where it was."""

    step: int = 0
    total_steps: int | None = None
    warmup: int = 0
    trained_seconds: float = 0.0
    recent: list[float] = field(default_factory=list)
    probe_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    cooldown_from: tuple[int, float] | None = None  # (step, lr) where the final decay began


def lr_for(state: LoopState, args: argparse.Namespace) -> float:
    """Warmup + cosine over the planned steps, or a linear decay once the probes pass."""
    floor = args.lr * 0.1
    if state.cooldown_from is not None and state.total_steps is not None:
        begin, lr = state.cooldown_from
        span = max(1, state.total_steps - begin)
        return lr + (floor - lr) * min(1.0, (state.step - begin) / span)
    return lr_at(state.step, state.warmup, state.total_steps or 10**6, args.lr, floor)


def save_checkpoint(
    path: Path,
    model: LlamaForCausalLM,
    optimizer: torch.optim.Optimizer,
    windows: Batches,
    state: LoopState,
) -> None:
    """Write the loop's state atomically (a kill mid-write leaves the previous checkpoint)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "order": windows.order,
            "pos": windows.pos,
            "epochs": windows.epochs,
            "generator": windows.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": state,
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(
    path: Path, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, windows: Batches
) -> LoopState:
    saved = torch.load(path, weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    windows.order, windows.pos, windows.epochs = saved["order"], saved["pos"], saved["epochs"]
    windows.gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    state: LoopState = saved["state"]
    return state


def train(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    train_stream: torch.Tensor,
    val_data: torch.Tensor,
    args: argparse.Namespace,
    budget_s: float,
    checkpoint: Path,
) -> TrainResult:
    """Time-bounded AdamW loop that stops early once the reading probes pass.

    The cosine schedule's length is computed from the measured step time after
    ``MEASURE_STEPS`` steps and re-planned every ``REPLAN_EVERY`` steps, so the run
    ends on budget even when other work on the (shared) machine slows it down. Every
    ``--probe-minutes`` the quick probe set runs; once it passes, the learning rate decays
    linearly to its floor over a short cooldown and the build ends. The loop state is saved
    every ``--checkpoint-minutes``, so a stopped build continues where it was.
    """
    windows = Batches(train_stream, args.seq_len, args.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        fused=False,
    )
    state = LoopState(warmup=args.warmup)
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer, windows)
        tqdm.write(
            f"resumed at step {state.step} ({state.trained_seconds / 60:.1f} min trained)",
            file=sys.stderr,
        )
    quick_probes = probe_tasks(PROBES_PER_KIND_DURING, seed=args.seed + 1)
    tokens_per_step = args.batch_size * args.seq_len
    eval_batches = math.ceil(len(val_data) / args.batch_size)
    session_start = time.monotonic()
    deadline = session_start + budget_s - state.trained_seconds
    hard_stop = deadline
    last_probe = last_save = session_start
    # Start times of recent steps (the first two are slow warm-up and skipped).
    stamps: deque[float] = deque(maxlen=REPLAN_WINDOW + 1)
    bar = tqdm(
        total=state.total_steps,
        initial=state.step,
        unit="step",
        mininterval=5.0,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    tuner = ThreadTuner(args.threads)
    first_step = state.step
    model.train()
    while state.total_steps is None or state.step < state.total_steps:
        now = time.monotonic()
        done_here = state.step - first_step
        if done_here >= 2:
            stamps.append(now)
        if state.cooldown_from is None and (
            done_here == MEASURE_STEPS
            or (done_here > MEASURE_STEPS and done_here % REPLAN_EVERY == 0)
        ):
            # Plan (then re-plan, as the machine is shared) the steps that fit in
            # the budget, keeping room for validation (~1/3 step per batch) and saving.
            step_time = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
            remaining = deadline - now - (eval_batches * step_time / 3 + 60.0)
            planned = state.step + max(1, int(remaining / step_time))
            if state.total_steps is None:
                state.warmup = min(args.warmup, max(1, planned // 10))
                tqdm.write(
                    f"step time {step_time:.2f}s -> {planned} steps "
                    f"(~{planned * tokens_per_step / 1e6:.1f}M tokens)",
                    file=sys.stderr,
                )
            state.total_steps = planned
            bar.total = planned
            hard_stop = deadline - eval_batches * step_time / 3 - 30.0
        if state.total_steps is not None and (state.step >= state.total_steps or now > hard_stop):
            break
        if now - last_probe > args.probe_minutes * 60 and state.cooldown_from is None:
            report = run_probes(model, tokenizer, quick_probes)
            state.probe_history.append((state.step, report.scores))
            tqdm.write(f"step {state.step}: probes {report.summary()}", file=sys.stderr)
            if report.passed(PROBE_THRESHOLDS):
                cooldown = max(50, state.step // 10)
                state.cooldown_from = (state.step, lr_for(state, args))
                state.total_steps = min(state.total_steps or 10**9, state.step + cooldown)
                bar.total = state.total_steps
                tqdm.write(f"probes pass: {cooldown} cooldown steps, then done", file=sys.stderr)
            last_probe = time.monotonic()
        lr = lr_for(state, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = windows.batch(args.batch_size)
        threads, t_step = tuner.apply(state.step), time.monotonic()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=batch[:, 0], labels=batch[:, 1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ended = time.monotonic()
        if done_here >= 2:
            tuner.record(threads, ended - t_step)
        state.step += 1
        state.trained_seconds += ended - now
        state.recent = [*state.recent, loss.item()][-50:]
        bar.update(1)
        bar.set_postfix(
            loss=f"{sum(state.recent) / len(state.recent):.3f}",
            lr=f"{lr:.2e}",
            threads=threads,
            refresh=False,
        )
        if ended - last_save > args.checkpoint_minutes * 60:
            save_checkpoint(checkpoint, model, optimizer, windows, state)
            last_save = time.monotonic()
    bar.close()
    save_checkpoint(checkpoint, model, optimizer, windows, state)
    val_loss = evaluate(model, val_data, args.batch_size)
    return TrainResult(
        steps=state.step,
        tokens_seen=state.step * tokens_per_step,
        train_loss=sum(state.recent) / max(1, len(state.recent)),
        val_loss=val_loss,
        train_seconds=state.trained_seconds,
        epochs=state.step * args.batch_size / len(windows.data),
        probe_history=state.probe_history,
        stopped_early=state.cooldown_from is not None,
    )


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


@torch.no_grad()
def greedy(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompt: str,
    max_new_tokens: int = 200,
) -> str:
    """Greedy chat completion, used for the model card's examples."""
    model.eval()
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :])


def make_tokenizer_config_portable(out: Path) -> None:
    """Use key names that transformers 4.x also reads (pyproject allows >=4.56).

    transformers 5 saves ``tokenizer_class: TokenizersBackend`` and a list under
    ``extra_special_tokens``; both 4.x and 5.x load the older spelling below.
    """
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_model_card(out: Path, info: dict[str, Any]) -> None:
    """README.md describing corpus, size, training run and rebuild command."""
    cfg: dict[str, Any] = info["config"]
    tr: TrainResult = info["train"]
    rows = "\n".join(
        f"| {name} | {s['documents']:,} | {s['chars']:,} |"
        for name, s in sorted(info["corpus"].items())
    )
    examples = "\n\n".join(f"**User:** {p}\n\n```text\n{c}\n```" for p, c in info["examples"])
    probes: ProbeReport = info["probes"]
    probe_total = sum(probes.counts.values())
    probe_rows = "\n".join(
        f"| {kind} | {score:.0%} | {PROBE_THRESHOLDS[kind]:.0%} |"
        for kind, score in probes.scores.items()
    )
    history = (
        "; ".join(
            f"step {step}: " + ", ".join(f"{k} {v:.0%}" for k, v in scores.items())
            for step, scores in tr.probe_history
        )
        or "not probed"
    )
    early = (
        "The probes passed, so the build decayed the learning rate and stopped early."
        if tr.stopped_early
        else "The build used its whole budget."
    )
    shares_text = ", ".join(f"{name} {share:.0%}" for name, share in info["shares"].items())
    scored_pct = f"{info.get('scored_share', 1.0):.0%}"
    quick = PROBES_PER_KIND_DURING
    card = f"""# tuneloop tiny base model

A {info["params"] / 1e6:.2f}M-parameter Llama-architecture causal LM trained **from
scratch on this machine** by `scripts/build_base_model.py`, so that tuneloop has a
base model to fine-tune without downloading weights. It is deliberately tiny
and weak: it knows the chat turn format, generic JSON syntax and some Python
documentation prose, and nothing about UI or screen layout (that is what
fine-tuning in tuneloop's demo has to teach).

## Architecture

`LlamaForCausalLM`: hidden {cfg["hidden_size"]}, {cfg["num_hidden_layers"]} layers,
{cfg["num_attention_heads"]} heads / {cfg["num_key_value_heads"]} KV heads,
MLP {cfg["intermediate_size"]}, RoPE, tied embeddings,
context {cfg["max_position_embeddings"]} tokens, float32 safetensors.
Parameters: **{info["params"]:,}**. Folder size: ~{info["folder_mb"]:.1f} MB.

## Tokenizer

Byte-level BPE (`tokenizers`), vocabulary **{info["vocab_size"]:,}** including the special
tokens `<|bos|>`, `<|end|>` (eos), `<|pad|>`, `<|system|>`, `<|user|>`, `<|assistant|>`.
Chat format: `<|bos|>` once, then `<|role|>\\n{{content}}<|end|>\\n` per turn;
the generation prompt is `<|assistant|>\\n`. The chat template wraps assistant
content + `<|end|>` in `{{% generation %}}` so
`apply_chat_template(..., return_assistant_tokens_mask=True)` works.

## Training corpus

Built offline only (seed {info["seed"]}):

| source | documents | characters |
| --- | ---: | ---: |
{rows}

* `stdlib_docstrings`: module/class/function docstrings of the Python
  {platform.python_version()} standard library, parsed with `ast` (tests and GUI
  packages skipped).
* `licenses`: license texts on disk (stdlib `LICENSE.txt`, `*.dist-info` license
  files of installed packages, `/usr/share/common-licenses`), de-duplicated.
* `synthetic_json`: seeded random generic JSON (users, orders, products, books,
  weather readings, configs, API responses, log events; `name`/`type`/`children`
  trees; arrays, numbers, booleans, null), compact and indented.
* `chat`: chat-formatted examples: docstring questions answered with the
  docstring summary, JSON requests answered with JSON only, and echo requests.
* `reading`: prompt-reading drills in chat format whose answer is in the prompt:
  copy a span, recall a value from a `key = value` list, fill a
  `name`/`type`/`children` JSON shape with given words, title-case a copy. Words are
  pseudo-words from the training half of `tuneloop.evaluate.probes.pseudo_word`'s
  space (60 %) or real corpus words (40 %).
* `repeated_spans`: a span of words shown twice (half pseudo-words).

Shares of generated characters: {shares_text}; prose (docstrings and licenses)
is the rest. The tokenizer is trained on the whole corpus, drills included, so
it has the training pseudo-words' syllables as tokens (the probes' words are made of the
same syllables but never occur in the corpus). Drills are scored on their answers only
and repeated spans on their second copy ({scored_pct} of training tokens are scored).
The corpus teaches generic
`name`/`type`/`children` trees, which are also the shape of UI layout trees:
disclosed here because fine-tuning a UI task starts from that shape.

Any paragraph mentioning UI/layout vocabulary (frame, screen, layout, button,
component, padding, ...) was removed.

## Prompt-reading probes

Greedy answers to {probe_total} tasks on held-out pseudo-words (the half no
training text contains), exact match (JSON compared as values); the thresholds
are what a base must reach for a student to learn a request:

| probe | score | threshold |
| --- | ---: | ---: |
{probe_rows}

During training (quick set, {quick} tasks per kind): {history}.
{early}

## Training run

* Tokens: {info["corpus_tokens"]:,} train / {info["val_tokens"]:,} held-out.
* {tr.steps:,} steps x {info["batch_size"]} x {info["seq_len"]} tokens =
  **{tr.tokens_seen:,} tokens seen** ({tr.epochs:.2f} epochs).
* AdamW (betas 0.9/0.95, weight decay {info["weight_decay"]}), peak lr {info["lr"]},
  linear warmup + cosine decay sized to the time budget, grad clip {info["grad_clip"]}.
* Final train loss (mean of last 50 steps): **{tr.train_loss:.3f}**;
  held-out validation loss: **{tr.val_loss:.3f}**.
* Wall time: {info["wall_seconds"] / 60:.1f} min total ({tr.train_seconds / 60:.1f} min
  training) on {info["threads"]} CPU cores (1-{info["threads"]} threads, picked by
  measured speed as the machine was shared), torch {torch.__version__},
  {info["precision"]}.

## Greedy examples

{examples}

## Limitations

Greedy outputs are mostly well-formed JSON that stops at `<|end|>`, and the
probes above say how well it reads its prompt; its docstring answers are generic
and its knowledge of the world is nil. It is a starting point for fine-tuning,
not a usable assistant. The schedule is sized by wall-clock time,
so a rebuild on a busier or faster machine sees a different number of tokens.

## Rebuild

```bash
{info["command"]}
```

## License

The weights are derived only from Python documentation (PSF license),
license texts that are themselves freely redistributable, and synthetic JSON
generated by the script. Ship it under the project's license.
"""
    (out / "README.md").write_text(card, encoding="utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("src/tuneloop/assets/base_model"))
    p.add_argument(
        "--work",
        type=Path,
        default=Path(".tuneloop/base-model-build"),
        help="corpus, tokenizer and checkpoints; a stopped build resumes from here",
    )
    p.add_argument(
        "--minutes", type=float, default=20.0, help="wall-clock budget for the training loop"
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="continue pretraining this base model folder (its tokenizer too) instead of "
        "starting from random weights",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--grad-clip", type=float, default=1.0)
    for source, share, what in (
        ("synthetic_json", 0.15, "raw synthetic JSON"),
        ("chat", 0.20, "chat examples (JSON requests, docstring questions, echoes)"),
        ("reading", 0.40, "prompt-reading drills (copy, recall, JSON shape, title case)"),
        ("repeated_spans", 0.10, "word spans shown twice"),
    ):
        p.add_argument(
            f"--{source.replace('_', '-')}-share",
            dest=f"share_{source}",
            type=float,
            default=share,
            help=f"fraction of characters that is {what}",
        )
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--probe-minutes", type=float, default=6.0, help="probe this often")
    p.add_argument("--checkpoint-minutes", type=float, default=4.0, help="save this often")
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, torch.get_num_threads()),
        help="maximum intra-op threads (the loop switches to 1 when that is faster)",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=cpu_has_fast_bf16(),
        help="bf16 autocast for training (default: on when the CPU has AMX/AVX512-BF16)",
    )
    return p.parse_args(argv)


def shares(args: argparse.Namespace) -> dict[str, float]:
    return {
        key[len("share_") :]: value for key, value in vars(args).items() if key.startswith("share_")
    }


RECIPE = 2
"""Bumped when the corpus, tokenizer or loss change, so an older build's work folder is not
resumed (2: drills scored on their answers, pseudo-words in the tokenizer's text)."""


def fingerprint(args: argparse.Namespace) -> str:
    """What a checkpoint must match to be resumed: everything but budgets and threads."""
    kept = {
        key: str(value)
        for key, value in sorted(vars(args).items())
        if key not in {"minutes", "threads", "probe_minutes", "checkpoint_minutes", "out", "work"}
    }
    kept["recipe"] = str(RECIPE)
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def prepare_data(
    args: argparse.Namespace, log: Any
) -> tuple[PreTrainedTokenizerFast, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Corpus → tokenizer → token streams, cached in the work folder for a resumed build."""
    cached = args.work / "data.pt"
    tokenizer_dir = args.work / "tokenizer"
    if cached.exists() and tokenizer_dir.exists():
        log(f"reusing corpus and tokenizer from {args.work}")
        data = torch.load(cached, weights_only=False)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
        return tokenizer, data["train"], data["val"], data["stats"]
    log("building corpus")
    corpus = build_corpus(args.seed, shares(args))
    stats = corpus.stats()
    for name, s in sorted(stats.items()):
        log(f"  {name}: {s['documents']:,} docs, {s['chars']:,} chars")
    if args.init_from is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.init_from)
    else:
        # The drills' pseudo-words are in the tokenizer's text too: it then learns their
        # syllables (2.85 tokens a held-out pseudo-word, 99 % of a span's tokens distinct,
        # against 4.27 and 90 % from natural text alone; natural text costs 8 % more tokens),
        # and copying distinct tokens is what a small model learns first.
        log("training tokenizer")
        tokenizer = train_tokenizer(corpus.texts, args.vocab_size)
    check_chat_template(tokenizer)
    log(f"  vocab size {len(tokenizer)}")
    rng = random.Random(args.seed)
    order = list(range(len(corpus.texts)))
    rng.shuffle(order)
    n_val = max(1, int(len(order) * args.val_fraction))
    val, train = order[:n_val], order[n_val:]
    val_stream = pack(
        tokenizer, [corpus.texts[i] for i in val], [corpus.scored_from[i] for i in val]
    )
    train_stream = pack(
        tokenizer, [corpus.texts[i] for i in train], [corpus.scored_from[i] for i in train]
    )
    val_data = windows_of(val_stream, args.seq_len, limit=64)
    args.work.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(tokenizer_dir)
    torch.save({"train": train_stream, "val": val_data, "stats": stats}, cached)
    return tokenizer, train_stream, val_data, stats


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f}s] {msg}", flush=True)

    marker = args.work / "fingerprint"
    if args.work.exists() and (not marker.exists() or marker.read_text() != fingerprint(args)):
        log(f"{args.work} holds a build with other settings; starting afresh")
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint(args))
    tokenizer, train_stream, val_data, stats = prepare_data(args, log)
    log(f"  {train_stream.shape[1]:,} train tokens, {val_data[:, 0].numel():,} validation tokens")

    torch.manual_seed(args.seed)
    if args.init_from is not None:
        model = LlamaForCausalLM.from_pretrained(args.init_from)
        log(f"continuing from {args.init_from}")
    else:
        model = build_model(args, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params:,} parameters; training for up to {args.minutes:g} minutes")
    result = train(
        model, tokenizer, train_stream, val_data, args, args.minutes * 60, args.work / "loop.pt"
    )
    log(
        f"done: {result.steps} steps, {result.tokens_seen:,} tokens, "
        f"train loss {result.train_loss:.3f}, val loss {result.val_loss:.3f}"
    )
    probes = run_probes(model, tokenizer, probe_tasks())
    log(f"probes (held-out pseudo-words, {sum(probes.counts.values())} tasks): {probes.summary()}")

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=256,
    )
    prompts = [
        "Return a JSON object describing a book.",
        "What does `json.dumps` do?",
        'Put the words kelvo, tarin in order into this JSON shape: {"name":"_","type":"_"}',
    ]
    examples = [(p, greedy(model, tokenizer, p)) for p in prompts]
    for p, c in examples:
        log(f"example: {p!r} -> {c!r}")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    make_tokenizer_config_portable(out)
    info = {
        "params": params,
        "config": model.config.to_dict(),
        "vocab_size": len(tokenizer),
        "corpus": stats,
        "shares": shares(args),
        "corpus_tokens": train_stream.shape[1],
        "scored_share": float((train_stream[1] != -100).float().mean()),
        "val_tokens": val_data[:, 0].numel(),
        "train": result,
        "probes": probes,
        "examples": examples,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip,
        "threads": args.threads,
        "precision": "bf16 autocast with fp32 weights" if args.bf16 else "fp32",
        "wall_seconds": time.monotonic() - t0,
        "folder_mb": folder_size(out) / 1e6,
        "command": (
            f".venv/bin/python scripts/build_base_model.py --out {out} --minutes {args.minutes:g}"
        ),
    }
    write_model_card(out, info)
    shutil.rmtree(args.work)  # finished: the next build starts afresh
    log(f"saved to {out} ({folder_size(out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
