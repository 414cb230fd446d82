"""Curation throughput: import + validate + redact + dedup + split + export, on one core.

Part 1 (examples/s, ours vs peer): a JSONL file of ~1 KB chat examples (some with PII, some
exact and near duplicates) goes through tuneloop's pipeline — read and detect the format,
validate every line, redact PII, drop exact and MinHash-LSH near duplicates, split by group,
write OpenAI JSONL — and through the usual hand-rolled peer built on Hugging Face ``datasets``
(``load_dataset("json")``, a structural filter, ``map`` with email/phone regexes, hash dedup,
``train_test_split``, ``to_json``), which does less (no near-duplicates, fewer PII kinds, no
per-line report). Both run in this process on one thread.

Part 2 (wall time and peak RSS): a version is built from N interactions stored in SQLite by
``build_dataset`` (streamed selection, redaction, near-dup, split, files, card), in a child
process so its peak RSS is its own. The default N is scaled so the whole bench stays under
five minutes on 2 cores; ``--stored 1000000`` runs the full million.

    python bench/curate_throughput.py [--examples 20000] [--stored 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SYSTEM = "You generate UI layout JSON. Respond with one JSON object describing the layout tree."
SCREENS = ["settings", "dashboard", "profile", "calendar", "inbox", "checkout", "search", "login"]
PLATFORMS = ["mobile", "web", "tablet"]
_LETTERS = random.Random(7)
# A vocabulary of 3,000 made-up words, so prompts share few shingles (as real prompts do).
WORDS = [
    "".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_LETTERS.randint(3, 9)))
    for _ in range(3000)
]


def make_example(rng: random.Random, index: int) -> dict[str, object]:
    screen = rng.choice(SCREENS)
    words = " ".join(rng.choice(WORDS) for _ in range(12))
    prompt = (
        f"Design a {rng.choice(PLATFORMS)} {screen} screen, request {index}: {words}. "
        "Use a clear hierarchy, generous spacing and realistic text."
    )
    if rng.random() < 0.1:
        prompt += f" Send it to user{index}@corp.example.io or call (415) 555-{index % 10000:04d}."
    children = [
        {
            "type": "TEXT",
            "name": f"label {i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(4)),
        }
        for i in range(6)
    ]
    layout = {"type": "FRAME", "name": screen, "layout": "VERTICAL", "gap": 16,
              "children": children}  # fmt: skip
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": json.dumps(layout)},
        ]
    }


def make_file(path: Path, count: int, seed: int = 0) -> float:
    """Write ``count`` examples (5% exact copies, 5% near copies); return the mean line size."""
    rng = random.Random(seed)
    lines = []
    previous: list[dict[str, object]] = []
    for index in range(count):
        roll = rng.random()
        if previous and roll < 0.05:
            line = rng.choice(previous)
        elif previous and roll < 0.10:
            line = json.loads(json.dumps(rng.choice(previous)))
            line["messages"][1]["content"] += " Thanks!"  # type: ignore[index]
        else:
            line = make_example(rng, index)
            previous.append(line)
            previous = previous[-1000:]
        lines.append(json.dumps(line))
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode()) / count


def run_ours(path: Path, out: Path) -> dict[str, int]:
    from collections import Counter

    from tuneloop.curate.checks import ValidateOptions, check_entry
    from tuneloop.curate.dedup import remove_near_duplicates
    from tuneloop.curate.pii import Redactor, redaction_step
    from tuneloop.curate.select import Example
    from tuneloop.curate.split import split_examples
    from tuneloop.curate.tokens import TokenCounter
    from tuneloop.formats import Record, iter_entries, write_splits

    options = ValidateOptions()
    counter = TokenCounter()
    redact = redaction_step(Redactor(), Counter())
    kept: dict[str, Example] = {}
    bad = 0
    for entry in iter_entries(path):  # import: read, detect, convert
        findings = check_entry(entry, options, counter, 65_536)  # validate
        if entry.record is None or any(f.severity == "error" for f in findings):
            bad += 1
            continue
        example = redact(Example(f"{entry.line}", entry.record.messages))  # redact
        kept.setdefault(example.key, example)  # exact dedup
    near = remove_near_duplicates(list(kept.values()), threshold=0.8)  # near dedup
    train, held_out = split_examples(near.kept, eval_fraction=0.2, seed="bench")  # split
    write_splits(  # export
        {"train": [Record(messages=e.messages) for e in train],
         "eval": [Record(messages=e.messages) for e in held_out]},
        out, "openai",
    )  # fmt: skip
    return {"kept": len(train) + len(held_out), "bad": bad, "near": near.dropped}


def run_peer(path: Path, out: Path) -> dict[str, int]:
    import datasets

    datasets.disable_caching()
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
    phone = re.compile(r"\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}")
    data = datasets.load_dataset("json", data_files=str(path), split="train")

    def valid(row: dict[str, object]) -> bool:
        messages = row["messages"]
        return (
            isinstance(messages, list)
            and bool(messages)
            and messages[-1]["role"] == "assistant"
            and all(isinstance(m["content"], str) and m["content"].strip() for m in messages)
        )

    def redact(row: dict[str, object]) -> dict[str, object]:
        messages = []
        for message in row["messages"]:  # type: ignore[union-attr]
            text = email.sub("contact@example.com", message["content"])
            messages.append({**message, "content": phone.sub("+1 (555) 000-0000", text)})
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        return {"messages": messages, "key": key}

    data = data.filter(valid).map(redact)
    keys = data["key"]
    seen: set[str] = set()
    first = []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            first.append(index)
    data = data.select(first).remove_columns("key")
    parts = data.train_test_split(test_size=0.2, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    parts["train"].to_json(str(out / "train.jsonl"))
    parts["test"].to_json(str(out / "eval.jsonl"))
    return {"kept": len(data), "bad": 0, "near": 0}


def timed(function, path: Path, out: Path, count: int) -> tuple[float, dict[str, int]]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = function(path, out)
    return count / (time.perf_counter() - started), result


def store_child(workspace: str, count: int) -> None:
    """In a child process: fill a SQLite store with ``count`` interactions, then build."""
    from sqlalchemy import insert

    from tuneloop.config import Config
    from tuneloop.curate.build import build_dataset
    from tuneloop.store import Interaction, Store

    config = Config.model_validate({"workspace": workspace, "task": "bench"})
    store = Store(config.store_url)
    rng = random.Random(1)
    started = time.perf_counter()
    batch = []
    for index in range(count):
        line = make_example(rng, index)
        messages = line["messages"]
        batch.append({
            "id": f"{index:032x}", "task": "bench", "source": "import",
            "messages": messages[:2], "response": messages[2]["content"],  # type: ignore[index]
            "metadata": {"category": SCREENS[index % len(SCREENS)]}, "reward": 0.8,
            "quality": 8, "valid_json": True, "prompt_hash": "",
        })  # fmt: skip
        if len(batch) == 5000:
            with store.session() as session:
                session.execute(insert(Interaction), batch)
            batch = []
    if batch:
        with store.session() as session:
            session.execute(insert(Interaction), batch)
    filled = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    dataset = build_dataset(store, config)
    built = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"fill_s": round(filled, 1), "build_s": round(built, 1),
                      "peak_rss_mb": round(peak / 1024, 1),
                      "rss_before_build_mb": round(rss_before / 1024, 1),
                      "examples": dataset.stats["counts"]["total"]}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--stored", type=int, default=50_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        store_child(args.child[0], int(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        source = base / "examples.jsonl"
        size = make_file(source, args.examples)
        print(f"{args.examples} examples, {size:,.0f} bytes each on average")
        import datasets  # noqa: F401  (imports are not what is measured)
        import datasketch  # noqa: F401

        import tuneloop.curate  # noqa: F401

        ours, ours_result = timed(run_ours, source, base / "ours", args.examples)
        peer, peer_result = timed(run_peer, source, base / "peer", args.examples)
        print(f"ours: {ours:,.0f} examples/s {ours_result}")
        print(f"peer (datasets pipeline): {peer:,.0f} examples/s {peer_result}")
        build: dict[str, float] = {}
        if args.stored:
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(base / "ws"), str(args.stored)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if child.returncode != 0:
                print(child.stderr[-2000:])
                raise SystemExit("the store build failed")
            build = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"build from {args.stored:,} stored interactions: {build}")
    print(
        json.dumps(
            {
                "bench": "curate_throughput",
                "unit": "examples/s",
                "ours": round(ours, 1),
                "peer": round(peer, 1),
                "ratio": round(ours / peer, 2),
                "peer_name": "datasets load_dataset+filter+map(regex)+hash dedup+split+to_json",
                "examples": args.examples,
                "bytes_per_example": round(size),
                "stored_interactions": args.stored,
                "build_from_store": build,
            }
        )
    )


if __name__ == "__main__":
    main()
