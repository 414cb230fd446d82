"""Reading the config: the TOML file, ``TUNELOOP_*`` environment overrides, explicit overrides,
and the commented default file that ``tuneloop init`` writes."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
import types
import warnings
from pathlib import Path
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from tuneloop.config.models import (
    CONFIG_FILENAME,
    ENV_PREFIX,
    NOT_CONFIG_VARIABLES,
    SECRET_HEADERS,
    SECRET_KEY_NAMES,
    URL_PASSWORD,
    Config,
    ProviderSettings,
)
from tuneloop.errors import ConfigError


def load_config(
    path: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read the config file (if any), apply env and explicit overrides, validate.

    ``path`` defaults to ``$TUNELOOP_CONFIG`` or ``./tuneloop.toml``; a missing default file is
    fine (defaults apply) but a missing explicit file is an error. Relative paths in the file are
    taken relative to the file's folder.
    """
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "TUNELOOP_CONFIG" in environ
    config_path = Path(path or environ.get("TUNELOOP_CONFIG") or CONFIG_FILENAME)
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    base_dir = Path.cwd()
    if config_path.is_file():
        data = _read_toml(config_path)
        base_dir = config_path.resolve().parent
        _refuse_secrets(data, config_path)
        _refuse_url_password(data, config_path)
        for key_path in _leaf_paths(data):
            origins[key_path] = str(config_path)
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist (run `tuneloop init`)")

    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_VARIABLES:
            continue
        key_path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        annotation = _annotation_at(key_path)
        if annotation is _UNKNOWN:
            warnings.warn(_unknown_variable(name), ConfigWarning, stacklevel=2)
            continue
        value, read_as = _parse_env_value(name, raw, annotation)
        _set_path(data, key_path, value)
        origins[key_path] = f"environment variable {name}{read_as}"
    for dotted, value in (overrides or {}).items():
        key_path = tuple(dotted.split("."))
        _set_path(data, key_path, value)
        origins[key_path] = "command-line option"

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, origins)) from None
    if not config.workspace.is_absolute():
        config.workspace = base_dir / config.workspace
    _check_provider_references(config.providers, config_path)
    for provider in config.providers.values():
        output = provider.output
        if output is not None and output.schema_path and not output.schema_path.is_absolute():
            output.schema_path = base_dir / output.schema_path
    return config


def _check_provider_references(providers: dict[str, ProviderSettings], path: Path) -> None:
    """Chain members named ``provider:NAME`` must exist, and no chain may contain itself."""
    members = {
        name: [
            m.strip().removeprefix("provider:")
            for m in settings.members
            if m.strip().startswith("provider:")
        ]
        for name, settings in providers.items()
    }
    for name, refs in members.items():
        for ref in refs:
            if ref not in providers:
                known = ", ".join(sorted(providers))
                raise ConfigError(
                    f"{path}: providers.{name}.members names provider:{ref}, "
                    f"which is not configured (known: {known})"
                )

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " → ".join((*trail[trail.index(name) :], name))
            raise ConfigError(f"{path}: chains contain each other: {cycle}")
        for ref in members.get(name, []):
            visit(ref, (*trail, name))

    for name in providers:
        visit(name, ())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _refuse_secrets(data: dict[str, Any], path: Path, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _refuse_secrets(value, path, f"{dotted}.")
        elif (
            _looks_secret(key) or (prefix.endswith("headers.") and key.lower() in SECRET_HEADERS)
        ) and value:
            raise ConfigError(
                f"{path}: key {dotted} looks like a secret; secrets are read only from "
                "environment variables (for example OPENAI_API_KEY), never from the config file"
            )


def _refuse_url_password(data: dict[str, Any], path: Path) -> None:
    store = data.get("store")
    url = store.get("url") if isinstance(store, dict) else None
    if isinstance(url, str):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            raise ConfigError(
                f"{path}: store.url contains a password; secrets are read only from environment "
                "variables: set TUNELOOP_STORE__URL instead (or use a password file such as "
                "~/.pgpass) and remove it from the file"
            )


def _looks_secret(key: str) -> bool:
    name = key.lower()
    return any(name == word or name.endswith(f"_{word}") for word in SECRET_KEY_NAMES)


def _leaf_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key_path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key_path[-1]] = value


class ConfigWarning(UserWarning):
    """Something in the environment looks meant for tuneloop but is not used (the CLI prints it)."""


_UNKNOWN = object()  # _annotation_at: the path names no config key
_ANY = object()  # _annotation_at: inside a free-form table (headers, body): any key goes


def _annotation_at(key_path: tuple[str, ...]) -> Any:
    """The type of the config key at ``key_path``; ``_UNKNOWN`` when there is no such key."""
    node: Any = Config
    for part in key_path:
        model = _model_in(node)
        if model is not None:
            field = model.model_fields.get(part)
            if field is None:
                return _UNKNOWN
            node = field.annotation
        elif get_origin(_strip_optional(node)) is dict:
            node = get_args(_strip_optional(node))[1]  # a table of named entries: any name
        else:
            return _ANY if node is Any else _UNKNOWN  # a scalar has no keys below it
    return node


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_names(node: Any = None, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every environment variable name that sets a key (tables of named entries excluded)."""
    model = _model_in(Config if node is None else node)
    if model is None:
        return [ENV_PREFIX + "__".join(part.upper() for part in prefix)] if prefix else []
    names: list[str] = []
    for name, field in model.model_fields.items():
        names.extend(_env_names(field.annotation, (*prefix, name)))
    return names


def _unknown_variable(name: str) -> str:
    close = difflib.get_close_matches(name, _env_names(), n=1, cutoff=0.5)
    hint = f"; the closest is {close[0]}" if close else ""
    return f"environment variable {name} is not a tuneloop config key{hint}; it is ignored"


def _is_list(annotation: Any) -> bool:
    return get_origin(_strip_optional(annotation)) in (list, tuple)


def _parse_env_value(name: str, raw: str, annotation: Any) -> tuple[Any, str]:
    """An environment value and how it was read: lists take JSON (``["a","b"]``) or commas
    (``a,b``); other keys take the text, or JSON for a table."""
    stripped = raw.strip()
    if _is_list(annotation):
        if stripped.startswith("["):
            try:
                return json.loads(stripped), " (read as a JSON list)"
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"environment variable {name} starts with '[' but is not a JSON list "
                    f'({exc.msg} at column {exc.colno}); give JSON such as ["a", "b"] '
                    "or a comma-separated list such as a,b"
                ) from None
        items = [item.strip() for item in stripped.split(",") if item.strip()]
        return items, " (read as a comma-separated list)"
    if stripped[:1] == "{":
        try:
            return json.loads(stripped), " (read as JSON)"
        except json.JSONDecodeError:
            return raw, ""
    return raw, ""


def redact_url(text: str) -> str:
    """The text with the password of any ``scheme://user:password@host`` URL in it masked."""
    return URL_PASSWORD.sub(r"\1***@", text)


def _describe_validation_error(exc: ValidationError, origins: dict[tuple[str, ...], str]) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        dotted = ".".join(loc) or "(top level)"
        origin = next(
            (origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), "defaults"
        )
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(
                f"  {dotted} (from {origin}): unknown key; allowed here: {', '.join(allowed)}"
            )
            continue
        value = redact_url(repr(error.get("input")))
        lines.append(f"  {dotted} = {value} (from {origin}): {error['msg']}")
    return "\n".join(lines)


def _allowed_keys(section_path: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section_path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def render_default_config() -> str:
    """A commented ``tuneloop.toml`` with every key at its default, generated from the models."""
    lines = [
        "# tuneloop configuration. Every key is optional; shown values are the defaults.",
        "# Environment variables override it: TUNELOOP_<SECTION>__<KEY>, e.g. "
        "TUNELOOP_TRAIN__EPOCHS=5.",
        "# Secrets (API keys) are read only from environment variables, never from this file.",
        "",
    ]
    lines.extend(_render_section(Config(), ()))
    return "\n".join(lines).rstrip() + "\n"


def _render_section(section: BaseModel, path: tuple[str, ...]) -> list[str]:
    scalars: list[str] = []
    tables: list[str] = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            tables.append("")
            tables.append(f"[{'.'.join((*path, name))}]")
            doc = (type(value).__doc__ or "").strip().splitlines()
            if doc and type(value).__doc__ != BaseModel.__doc__:
                tables.insert(len(tables) - 1, f"# {doc[0]}")
            tables.extend(_render_section(value, (*path, name)))
            continue
        if field.description:
            scalars.append(f"# {field.description}")
        if value is None:
            scalars.append(f"# {name} = ")
        elif isinstance(value, dict) and not value:
            # A table of named tables (providers): an inline {} would forbid adding them.
            scalars.append(f"# [{'.'.join((*path, name))}.NAME] tables, none yet")
        else:
            scalars.append(f"{name} = {_toml_value(value)}")
    return scalars + tables


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return json.dumps(value.as_posix())
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)
