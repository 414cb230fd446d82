"""Counting an example's tokens with the target's own tokenizer, and saying which one was used.

Order of preference: ``tiktoken`` for OpenAI models, but only when its encoding files are already
cached on this machine (``TIKTOKEN_CACHE_DIR``; tiktoken would otherwise download them); then a
Hugging Face tokenizer the caller gives (its chat template counts the formatted conversation
exactly); else an estimate of 4 characters per token. ``method`` names what was used, so a card
never passes an estimate off as a count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CHARS_PER_TOKEN = 4
# Role markers and separators a chat template adds around each message, when counting per message.
MESSAGE_OVERHEAD_TOKENS = 4
OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "ft:gpt", "davinci", "babbage", "text-embedding")

Message = dict[str, Any]


def tiktoken_encoding(model: str) -> Any | None:
    """The tiktoken encoding of an OpenAI ``model`` when it can be had offline, else None."""
    if not model.startswith(OPENAI_PREFIXES):
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if not cache or not Path(cache).is_dir() or not any(Path(cache).iterdir()):
        return None
    try:
        import tiktoken

        return tiktoken.encoding_for_model(model.removeprefix("ft:").split(":")[0])
    except Exception:  # unknown model or an encoding missing from the cache: count otherwise
        return None


class TokenCounter:
    """Counts tokens with tiktoken, a Hugging Face tokenizer or a 4 chars/token estimate."""

    def __init__(self, tokenizer: Any = None, *, model: str | None = None) -> None:
        encoding = tiktoken_encoding(model) if model and tokenizer is None else None
        self.tokenizer = tokenizer
        self._encoding = encoding
        self._chat_template = tokenizer is not None and hasattr(tokenizer, "apply_chat_template")
        if encoding is not None:
            self.method = f"tiktoken {encoding.name}"
        elif tokenizer is not None:
            self.method = "tokenizer"
        else:
            self.method = "estimated (4 chars/token)"

    @property
    def estimated(self) -> bool:
        return self.tokenizer is None and self._encoding is None

    def count_text(self, text: str) -> int:
        if self._encoding is not None:
            return len(self._encoding.encode(text, disallowed_special=()))
        if self.tokenizer is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        if hasattr(self.tokenizer, "encode"):
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        encode: Callable[[str], Sequence[Any]] = self.tokenizer
        return len(encode(text))

    def count_example(self, messages: list[Message]) -> int:
        if self._chat_template:
            try:
                encoded = self.tokenizer.apply_chat_template(messages, tokenize=True)
            except Exception:  # no chat template on this tokenizer: count per message from now on
                self._chat_template = False
            else:
                ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
                self.method = "tokenizer chat template"
                return len(ids)
        return sum(
            self.count_text(_content_text(message.get("content"))) + MESSAGE_OVERHEAD_TOKENS
            for message in messages
            if isinstance(message, dict)
        )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: count their text
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
