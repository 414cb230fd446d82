"""Scores of one output against its reference: JSON validity, structural similarity, exact match.

Structured-output tasks (layouts, forms, extraction) fail in two ways: output that is not JSON
at all, and JSON with the wrong shape. ``valid_json`` measures the first and
``structural_similarity`` the second, with partial credit so a model that gets most of the tree
right scores higher than one that gets little of it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from tuneloop.jsontext import parse_json

# Weights of the three parts of structural_similarity; they sum to 1.
STRUCTURE_WEIGHT = 0.5
KEYS_WEIGHT = 0.2
VALUES_WEIGHT = 0.3


def _parse(text: str) -> tuple[bool, Any]:
    """(True, value) when the text is one strict JSON value (see ``tuneloop.jsontext``)."""
    result = parse_json(text)
    return result.ok, result.value


def parse_json_output(text: str) -> Any | None:
    """The JSON value of a model output, or None when it is not JSON (use ``valid_json`` to tell
    a literal ``null`` apart). Code fences are allowed; prose around the JSON is not, because an
    app parsing the output would fail on it too.
    """
    return _parse(text)[1]


def valid_json(text: str) -> bool:
    """Whether the output is one JSON value (optionally inside a ``` code fence)."""
    return _parse(text)[0]


def exact_match(output: str, reference: str) -> bool:
    """Same JSON value (key order and whitespace ignored) or, for non-JSON, same stripped text."""
    out_ok, out_value = _parse(output)
    ref_ok, ref_value = _parse(reference)
    if out_ok and ref_ok:
        return _canonical(out_value) == _canonical(ref_value)
    return output.strip() == reference.strip()


def json_equal(first: str, second: str) -> bool | None:
    """Whether two outputs are the same JSON value (key order, whitespace and code fences
    ignored); None when neither is JSON (free text has no JSON to compare)."""
    return compare_json(first, second)[2]


def compare_json(first: str, second: str) -> tuple[bool, bool, bool | None]:
    """(first is JSON, second is JSON, ``json_equal``), parsing each text once and identical
    texts once in all: what a comparison of millions of answer pairs needs."""
    first_ok, first_value = _parse(first)
    if first.strip() == second.strip():
        return first_ok, first_ok, True if first_ok else None
    second_ok, second_value = _parse(second)
    if not first_ok and not second_ok:
        return False, False, None
    same = first_ok and second_ok and _canonical(first_value) == _canonical(second_value)
    return first_ok, second_ok, same


def structural_similarity(output: str, reference: str) -> float:
    """How much of the reference JSON tree the output reproduces, in [0, 1].

    Both texts are parsed (``parse_json_output``); an output that is not JSON scores 0, a
    reference that is not JSON is a ``ValueError`` (use ``text_similarity`` for free text).

    Each tree is described by three multisets, built by walking every node below the root:

    * paths ``P``: (path from the root, node type), where a path step is an object key or an
      array position, and the type is object/array/string/number/boolean/null;
    * keys ``K``: every object key, wherever it occurs (credit for the right field names even
      when they are nested differently);
    * values ``V``: (path, value) for every scalar leaf; numbers compare by value (1 == 1.0).

    With ``dice(A, B) = 2|A ∩ B| / (|A| + |B|)`` (the F1 of A against B; 1 when both are empty):

        similarity = 0.5·dice(P_out, P_ref) + 0.2·dice(K_out, K_ref) + 0.3·dice(V_out, V_ref)

    Object keys are order-insensitive and arrays are positional. Roots of different types
    score 0; scalar roots score 1 if equal, else 0. Identical trees score 1 and trees sharing
    nothing below the root score 0. Fixing a wrong leaf value or type raises the score; adding
    a missing node at its right place raises the path and value parts (the key part can only
    drop if that key is already over-represented elsewhere in the output).
    """
    ref_ok, ref_value = _parse(reference)
    if not ref_ok:
        raise ValueError("the reference is not JSON; structural similarity needs a JSON reference")
    out_ok, out_value = _parse(output)
    if not out_ok:
        return 0.0
    return tree_similarity(out_value, ref_value)


def tree_similarity(output: Any, reference: Any) -> float:
    """``structural_similarity`` of two already-parsed JSON values."""
    if _type(output) != _type(reference):
        return 0.0
    if _type(reference) not in ("object", "array"):
        return 1.0 if _canonical(output) == _canonical(reference) else 0.0
    out_paths, out_keys, out_values = _features(output)
    ref_paths, ref_keys, ref_values = _features(reference)
    score = (
        STRUCTURE_WEIGHT * dice(out_paths, ref_paths)
        + KEYS_WEIGHT * dice(out_keys, ref_keys)
        + VALUES_WEIGHT * dice(out_values, ref_values)
    )
    return round(min(1.0, max(0.0, score)), 6)


def text_similarity(output: str, reference: str) -> float:
    """Token F1 of lowercased whitespace-separated words: the similarity for free-text tasks."""
    return round(dice(Counter(output.lower().split()), Counter(reference.lower().split())), 6)


def dice(a: Counter[Any], b: Counter[Any]) -> float:
    """``2|A ∩ B| / (|A| + |B|)`` over multisets; 1.0 when both are empty."""
    total = sum(a.values()) + sum(b.values())
    if total == 0:
        return 1.0
    return 2 * sum((a & b).values()) / total


def score_output(output: str, reference: str | None) -> dict[str, Any]:
    """All per-example scores. A JSON reference is scored structurally, free text by token F1;
    ``valid_json`` is None for free-text references (JSON is not expected there), and the
    reference-based scores are None without a reference.
    """
    ref_is_json = reference is not None and valid_json(reference)
    scores: dict[str, Any] = {
        "valid_json": valid_json(output) if reference is None or ref_is_json else None,
        "similarity": None,
        "similarity_kind": None,
        "exact_match": None,
    }
    if reference is not None:
        if ref_is_json:
            scores["similarity"] = structural_similarity(output, reference)
            scores["similarity_kind"] = "json"
        else:
            scores["similarity"] = text_similarity(output, reference)
            scores["similarity_kind"] = "text"
        scores["exact_match"] = exact_match(output, reference)
    return scores


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


def _canonical(value: Any) -> Hashable:
    """A hashable form where 1 == 1.0 but True != 1, and object key order does not matter."""
    kind = _type(value)
    if kind == "object":
        return ("object", tuple(sorted((k, _canonical(v)) for k, v in value.items())))
    if kind == "array":
        return ("array", tuple(_canonical(v) for v in value))
    if kind == "number":
        number = float(value)
        return ("number", number if math.isfinite(number) else repr(number))
    return (kind, value)


def _features(root: Any) -> tuple[Counter[Any], Counter[Any], Counter[Any]]:
    paths: Counter[Any] = Counter()
    keys: Counter[Any] = Counter()
    values: Counter[Any] = Counter()
    stack: list[tuple[tuple[Any, ...], Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        kind = _type(node)
        if path:
            paths[(path, kind)] += 1
        if kind == "object":
            for key, child in node.items():
                keys[key] += 1
                stack.append(((*path, ("key", key)), child))
        elif kind == "array":
            for index, child in enumerate(node):
                stack.append(((*path, ("index", index)), child))
        elif path:
            values[(path, _canonical(node))] += 1
    return paths, keys, values


def schema_metric(schema: Mapping[str, Any]) -> Callable[[str, str | None, Any], float]:
    """A metric: 1.0 when the output is JSON that validates against ``schema``, else 0.0.

    The schema itself is checked first, so a broken schema is an error, not a 0 % score.
    """
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    validator = validator_class(schema)

    def schema_valid(output: str, reference: str | None, example: Any) -> float:
        ok, value = _parse(output)
        return 1.0 if ok and validator.is_valid(value) else 0.0

    return schema_valid


def field_metric(fields: Sequence[str] = ()) -> Callable[[str, str | None, Any], float | None]:
    """A metric: the share of fields whose value in the output equals the reference's.

    ``fields`` are paths (``a/b/0`` walks objects and arrays); empty means every top-level key
    of the reference object. None when the reference is not a JSON object; a field missing
    from the output counts as wrong.
    """

    def field_accuracy(output: str, reference: str | None, example: Any) -> float | None:
        if reference is None:
            return None
        ref_ok, ref_value = _parse(reference)
        if not ref_ok or not isinstance(ref_value, dict):
            return None
        out_ok, out_value = _parse(output)
        paths = list(fields) or sorted(ref_value)
        if not paths:
            return None
        right = 0
        for path in paths:
            expected = _walk(ref_value, path)
            got = _walk(out_value, path) if out_ok else _MISSING
            if expected is not _MISSING and got is not _MISSING:
                right += _canonical(got) == _canonical(expected)
        return round(right / len(paths), 6)

    return field_accuracy


def text_metric(output: str, reference: str | None, example: Any) -> float | None:
    """``text_similarity`` as a metric (token F1 on any output, JSON or not)."""
    return None if reference is None else text_similarity(output, reference)


_MISSING = object()


def _walk(value: Any, path: str) -> Any:
    node = value
    for part in path.split("/"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node
