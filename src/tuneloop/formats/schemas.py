"""The record formats: how each is recognised, read into a ``Record`` and written back.

| format | one entry |
|---|---|
| openai | ``{"messages": [...], "tools"?: [...]}`` (OpenAI chat fine-tuning; also Together's) |
| together | the same, checked with Together's extra rules (system/user first, roles alternate) |
| dpo | ``{"input": {"messages"}, "preferred_output": [...], "non_preferred_output": [...]}`` |
| preference | ``{"prompt", "chosen", "rejected"}`` (TRL's preference columns) |
| prompt-completion | ``{"prompt": ..., "completion": ...}`` (strings, or TRL's message lists) |
| text | ``{"text": "..."}`` (Together's plain-text format) |
| alpaca | ``{"instruction", "input"?, "output", "system"?, "history"?}`` |
| sharegpt | ``{"conversations": [{"from": "human", "value": ...}, ...], "system"?: ...}`` |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tuneloop.formats.records import Message, Record

CHAT_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "weight")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
}
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "tool"}
RECORD_FORMATS = (
    "openai",
    "together",
    "dpo",
    "preference",
    "prompt-completion",
    "text",
    "alpaca",
    "sharegpt",
)
ALIASES = {
    "chat": "openai",
    "messages": "openai",
    "prompt_completion": "prompt-completion",
    "completion": "prompt-completion",
    "orpo": "preference",
    "trl-preference": "preference",
}


class FormatProblem(Exception):
    """An entry does not fit its format; ``code`` is the stable name the validator prints."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalise_format(name: str) -> str:
    """A record format name, with aliases resolved; ValueError lists the known ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in RECORD_FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(RECORD_FORMATS)}")
    return key


def detect(value: Any) -> str | None:
    """The format an entry looks like by its keys, or None (then it is reported, not guessed)."""
    if not isinstance(value, dict):
        return None
    keys = value.keys()
    if "messages" in keys:
        return "openai"
    if "preferred_output" in keys or "non_preferred_output" in keys:
        return "dpo"
    if "chosen" in keys and "rejected" in keys:
        return "preference"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt-completion"
    if "text" in keys:
        return "text"
    return None


# -- reading ------------------------------------------------------------------------------------


def _require(value: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in value or value[key] is None:
        raise FormatProblem("missing_field", f"missing key {key!r}")
    item = value[key]
    if not isinstance(item, kind):
        raise FormatProblem("field_type", f"{key!r} must be {what}, not {type_name(item)}")
    return item


def _messages(items: Any, where: str) -> list[Message]:
    if not isinstance(items, list):
        raise FormatProblem("field_type", f"{where} must be a list of messages")
    for index, message in enumerate(items):
        if not isinstance(message, dict):
            raise FormatProblem(
                "field_type", f"{where}[{index}] must be an object, not {type_name(message)}"
            )
    return [dict(message) for message in items]


def _extra(value: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known_keys = set(known)
    return {key: item for key, item in value.items() if key not in known_keys}


def read_openai(value: dict[str, Any]) -> Record:
    messages = _messages(_require(value, "messages", list, "a list"), "messages")
    tools = value.get("tools")
    return Record(
        messages=messages,
        tools=tools if isinstance(tools, list) else None,
        metadata=_extra(value, ("messages", "tools")),
    )


def read_dpo(value: dict[str, Any]) -> Record:
    source = _require(value, "input", dict, "an object")
    messages = _messages(_require(source, "messages", list, "a list"), "input.messages")
    chosen = _messages(_require(value, "preferred_output", list, "a list"), "preferred_output")
    rejected = _messages(
        _require(value, "non_preferred_output", list, "a list"), "non_preferred_output"
    )
    tools = source.get("tools")
    return Record(
        messages=messages,
        chosen=chosen,
        rejected=rejected,
        tools=tools if isinstance(tools, list) else None,
        metadata=_extra(value, ("input", "preferred_output", "non_preferred_output")),
    )


def _as_turns(value: Any, key: str, role: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return _messages(value, key)
    raise FormatProblem("field_type", f"{key!r} must be a string or a list of messages")


def read_preference(value: dict[str, Any]) -> Record:
    prompt = value.get("prompt")
    messages = [] if prompt is None else _as_turns(prompt, "prompt", "user")
    chosen = _as_turns(value.get("chosen"), "chosen", "assistant")
    rejected = _as_turns(value.get("rejected"), "rejected", "assistant")
    if prompt is None and len(chosen) > 1:  # implicit prompt: the shared leading turns
        messages, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    return Record(
        messages=messages,
        chosen=chosen,
        rejected=rejected,
        metadata=_extra(value, ("prompt", "chosen", "rejected")),
    )


def read_prompt_completion(value: dict[str, Any]) -> Record:
    if "prompt" not in value or value["prompt"] is None:
        raise FormatProblem("missing_field", "missing key 'prompt'")
    if "completion" not in value or value["completion"] is None:
        raise FormatProblem("missing_field", "missing key 'completion'")
    prompt = _as_turns(value["prompt"], "prompt", "user")
    completion = _as_turns(value["completion"], "completion", "assistant")
    return Record(messages=prompt + completion, metadata=_extra(value, ("prompt", "completion")))


def read_text(value: dict[str, Any]) -> Record:
    text = _require(value, "text", str, "a string")
    return Record(text=text, metadata=_extra(value, ("text",)))


def read_alpaca(value: dict[str, Any]) -> Record:
    instruction = _require(value, "instruction", str, "a string")
    output = _require(value, "output", str, "a string")
    extra_input = value.get("input") or ""
    if not isinstance(extra_input, str):
        raise FormatProblem("field_type", f"'input' must be a string, not {type_name(extra_input)}")
    messages: list[Message] = []
    system = value.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    history = value.get("history") or []
    if not isinstance(history, list):
        raise FormatProblem("field_type", "'history' must be a list of [user, assistant] pairs")
    for index, pair in enumerate(history):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise FormatProblem("field_type", f"history[{index}] must be [user, assistant] text")
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    user = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Record(
        messages=messages,
        metadata=_extra(value, ("instruction", "input", "output", "system", "history")),
    )


def read_sharegpt(value: dict[str, Any]) -> Record:
    turns = _require(value, "conversations", list, "a list")
    messages: list[Message] = []
    system = value.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise FormatProblem("field_type", f"{where} must be an object, not {type_name(turn)}")
        speaker = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if speaker is None:
            raise FormatProblem("missing_field", f"{where}: missing key 'from'")
        if text is None:
            raise FormatProblem("missing_field", f"{where}: missing key 'value'")
        role = SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise FormatProblem(
                "unrecognized_role",
                f"{where}: unknown speaker {speaker!r}; known: {', '.join(sorted(SHAREGPT_ROLES))}",
            )
        if not isinstance(text, str):
            raise FormatProblem("field_type", f"{where}: 'value' must be a string")
        messages.append({"role": role, "content": text})
    tools = value.get("tools")
    return Record(
        messages=messages,
        tools=tools if isinstance(tools, list) else None,
        metadata=_extra(value, ("conversations", "system", "tools")),
    )


READERS: dict[str, Callable[[dict[str, Any]], Record]] = {
    "openai": read_openai,
    "together": read_openai,
    "dpo": read_dpo,
    "preference": read_preference,
    "prompt-completion": read_prompt_completion,
    "text": read_text,
    "alpaca": read_alpaca,
    "sharegpt": read_sharegpt,
}


def to_record(value: Any, fmt: str) -> Record:
    """Read one entry as ``fmt``; FormatProblem (with a code) when it does not fit."""
    if not isinstance(value, dict):
        raise FormatProblem("data_type", f"an entry must be a JSON object, not {type_name(value)}")
    return READERS[fmt](value)


# -- writing ------------------------------------------------------------------------------------


def clean_message(message: Message) -> Message:
    """Only the keys the chat fine-tuning formats accept, in a stable order."""
    return {key: message[key] for key in CHAT_KEYS if key in message}


def write_openai(record: Record) -> dict[str, Any]:
    if record.kind == "preference":
        return write_dpo(record)
    if record.kind == "text":
        raise FormatProblem("unsupported", "a plain-text example has no messages")
    line: dict[str, Any] = {"messages": [clean_message(m) for m in record.messages]}
    if record.tools:
        line["tools"] = record.tools
    return line


def write_dpo(record: Record) -> dict[str, Any]:
    if record.kind != "preference" or record.chosen is None or record.rejected is None:
        raise FormatProblem("unsupported", "the DPO format needs a preference pair")
    source: dict[str, Any] = {"messages": [clean_message(m) for m in record.messages]}
    if record.tools:
        source["tools"] = record.tools
    return {
        "input": source,
        "preferred_output": [clean_message(m) for m in record.chosen[-1:]],
        "non_preferred_output": [clean_message(m) for m in record.rejected[-1:]],
    }


def write_preference(record: Record) -> dict[str, Any]:
    """TRL's conversational preference columns: prompt, chosen, rejected as message lists."""
    if record.kind != "preference" or record.chosen is None or record.rejected is None:
        raise FormatProblem("unsupported", "the preference format needs a preference pair")
    return {
        "prompt": [_plain(m) for m in record.messages],
        "chosen": [_plain(m) for m in record.chosen[-1:]],
        "rejected": [_plain(m) for m in record.rejected[-1:]],
    }


def _plain(message: Message) -> Message:
    return {"role": str(message.get("role", "")), "content": _text(message.get("content"))}


def _text(content: Any) -> str:
    return content if isinstance(content, str) else ""


def _single_turn(record: Record) -> tuple[str, str] | None:
    """``(prompt, completion)`` text when the record is one user turn (and maybe a system one)."""
    messages = record.messages
    roles = [m.get("role") for m in messages]
    if roles == ["user", "assistant"]:
        return _text(messages[0].get("content")), _text(messages[1].get("content"))
    if roles == ["system", "user", "assistant"]:
        system, user = _text(messages[0].get("content")), _text(messages[1].get("content"))
        return f"{system}\n\n{user}", _text(messages[2].get("content"))
    return None


def write_prompt_completion(record: Record, *, as_text: bool) -> dict[str, Any]:
    """Strings when every record of the file is single-turn, else TRL's message lists."""
    _need_chat(record, "prompt-completion")
    if as_text:
        pair = _single_turn(record)
        if pair is None:
            raise FormatProblem(
                "unsupported", "a multi-turn example cannot be prompt/completion text"
            )
        return {"prompt": pair[0], "completion": pair[1]}
    return {
        "prompt": [_plain(m) for m in record.messages[:-1]],
        "completion": [_plain(m) for m in record.messages[-1:]],
    }


def _need_chat(record: Record, fmt: str) -> None:
    if record.kind != "chat":
        raise FormatProblem("unsupported", f"the {fmt} format needs a chat example")
    if not record.messages or record.messages[-1].get("role") != "assistant":
        raise FormatProblem("unsupported", f"the {fmt} format needs a final assistant message")


def write_alpaca(record: Record) -> dict[str, Any]:
    _need_chat(record, "alpaca")
    messages = list(record.messages)
    line: dict[str, Any] = {}
    if messages[0].get("role") == "system":
        line["system"] = _text(messages.pop(0).get("content"))
    if len(messages) % 2 or any(
        m.get("role") != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(messages)
    ):
        raise FormatProblem("unsupported", "alpaca needs alternating user/assistant turns")
    history = [
        [_text(messages[i].get("content")), _text(messages[i + 1].get("content"))]
        for i in range(0, len(messages) - 2, 2)
    ]
    line["instruction"] = _text(messages[-2].get("content"))
    line["input"] = ""
    line["output"] = _text(messages[-1].get("content"))
    if history:
        line["history"] = history
    return line


def write_sharegpt(record: Record) -> dict[str, Any]:
    _need_chat(record, "sharegpt")
    turns = []
    for message in record.messages:
        role = str(message.get("role"))
        turns.append(
            {"from": SHAREGPT_FROM.get(role, role), "value": _text(message.get("content"))}
        )
    line: dict[str, Any] = {"conversations": turns}
    if record.tools:
        line["tools"] = record.tools
    return line


def write_text(record: Record) -> dict[str, Any]:
    if record.kind != "text" or record.text is None:
        raise FormatProblem("unsupported", "the text format needs a plain-text example")
    return {"text": record.text}


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def log_line(record: Record) -> dict[str, Any]:
    """A record as one line of ``tuneloop log import``: prompt ``messages``, ``response``, the
    format's other fields as ``metadata``; a preference pair logs the non-preferred answer with
    the preferred one as the user's correction."""
    metadata = dict(record.metadata)
    if record.tools:
        metadata["tools"] = record.tools
    if record.kind == "text":
        raise FormatProblem("unsupported", "a plain-text example has no prompt and answer to log")
    if record.kind == "preference":
        chosen = record.response
        rejected = record.rejected[-1].get("content") if record.rejected else None
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise FormatProblem("field_type", "preferred and non-preferred outputs must be text")
        return {
            "messages": record.messages,
            "response": rejected,
            "metadata": metadata,
            "feedback": [{"kind": "correction", "edited": chosen}],
        }
    response = record.response
    if response is None:
        raise FormatProblem(
            "example_missing_assistant_message", "no final assistant message to log as response"
        )
    return {"messages": record.prompt, "response": response, "metadata": metadata}
