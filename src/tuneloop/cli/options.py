"""Command-line options generated from the config models, so the two cannot drift.

``@config_options("train", TrainConfig)`` gives a command one ``--key`` option per field of the
section (help text, choices and type from the field), plus ``--set section.key=value`` for any
other key. The command receives them together as ``overrides``: dotted keys for ``load``, which
validates them like values from the file or the environment.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

F = TypeVar("F", bound=Callable[..., Any])
OVERRIDES = "overrides"
SET_OPTION = "set_values"
_SCALARS = (str, int, float, bool)


def _option_type(annotation: Any) -> tuple[Any, str] | None:
    """(type typer understands, extra help) for a field's annotation; None: not an option."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _option_type(present[0]) if len(present) == 1 else None
    if origin is Literal:
        choices = typing.get_args(annotation)
        return str, "one of: " + ", ".join(str(choice) for choice in choices)
    if origin is list and typing.get_args(annotation) in ((str,), (int,)):
        return str, "comma-separated"
    if annotation in _SCALARS:
        return annotation, ""
    return None


def _help(section: str, name: str, field: FieldInfo, extra: str) -> str:
    text = f"{section}.{name}" + (f": {field.description}" if field.description else "")
    return f"{text} ({extra})" if extra else text


def _section_parameters(
    section: str, model: type[BaseModel], exclude: frozenset[str], prefix: str = ""
) -> dict[str, tuple[inspect.Parameter, str, bool]]:
    """Generated parameters by Python name → (parameter, dotted config key, is a list).

    A nested model (``curate.pii``) gives prefixed options (``--pii-emails``).
    """
    generated: dict[str, tuple[inspect.Parameter, str, bool]] = {}
    for field_name, field in model.model_fields.items():
        name = prefix + field_name
        if name in exclude:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            generated.update(
                _section_parameters(f"{section}.{field_name}", annotation, exclude, f"{name}_")
            )
            continue
        option = _option_type(annotation)
        if option is None:
            continue
        kind, extra = option
        flag = "--" + name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
        info = typer.Option(
            *decls, help=_help(section, field_name, field, extra), show_default=False
        )
        parameter = inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[kind | None, info],
        )
        is_list = typing.get_origin(annotation) is list
        generated[name] = (parameter, f"{section}.{field_name}", is_list)
    return generated


def parse_set_values(values: list[str] | None) -> dict[str, str]:
    """``["train.epochs=3"]`` → ``{"train.epochs": "3"}``; a malformed item is a usage error."""
    parsed: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE (for example train.epochs=3)")
        parsed[key.strip()] = value
    return parsed


def config_options(
    section: str, model: type[BaseModel], *, exclude: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """Add one option per field of ``model`` (config section ``section``) to a command.

    The command must take a keyword ``overrides: dict[str, Any]``; it gets the dotted keys of the
    options that were given (``--set`` ones too), ready for ``load(config_path, **overrides)``.
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != OVERRIDES]
        taken = {p.name for p in own}
        generated = _section_parameters(section, model, frozenset(exclude) | taken)
        set_parameter = inspect.Parameter(
            SET_OPTION,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                list[str] | None,
                typer.Option(
                    "--set",
                    help="Any config key, as section.key=value (repeatable).",
                    show_default=False,
                ),
            ],
        )

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            overrides: dict[str, Any] = dict(parse_set_values(kwargs.pop(SET_OPTION, None)))
            for name, (_parameter, key, is_list) in generated.items():
                value = kwargs.pop(name, None)
                if value is None:
                    continue
                if is_list:
                    value = [part.strip() for part in str(value).split(",") if part.strip()]
                overrides[key] = value
            return command(**kwargs, **{OVERRIDES: overrides})

        ordered = sorted(own, key=lambda p: p.kind)
        parameters = [*ordered, *(p for p, _key, _list in generated.values()), set_parameter]
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
        )
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return typing.cast(F, wrapper)

    return decorate
