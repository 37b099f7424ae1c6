"""The one configuration loader: a TOML file validated against a tree of frozen dataclasses.

Unknown keys and wrong types are errors that name the file, line and key and say what was expected.
Pure apart from reading the file in `load`; no environment reads or writes. Gateway and HQ both use it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is invalid; the message is ready for the operator."""


def load(path: Path, schema: type[T]) -> T:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc}") from exc
    return loads(text, schema, str(path))


def loads(text: str, schema: type[T], source: str = "<config>") -> T:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    lines = _KeyLines(text)
    return _build(schema, data, (), source, lines)


def build(data: dict[str, Any], schema: type[T], source: str) -> T:
    """A configuration from already parsed data (e.g. a TOML file with values from elsewhere laid over it);
    errors name `source` and the key, without line numbers."""
    return _build(schema, data, (), source, _KeyLines(""))


def field_docs(schema: type[Any], prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, doc) for every setting, depth first: the configuration reference."""
    out: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out.extend(field_docs(typ, key + "."))  # type: ignore[arg-type]
            continue
        item = (typing.get_args(typ) or (None,))[0]
        if typing.get_origin(typ) is list and dataclasses.is_dataclass(item):
            out.extend(field_docs(item, f"{key}[]."))  # type: ignore[arg-type]
            continue
        default: Any = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if default is dataclasses.MISSING:
            default = "(required)"
        out.append((key, _type_name(typ), default, f.metadata.get("doc", "")))
    return out


def markdown_reference(schema: type[Any]) -> str:
    """The configuration reference as a Markdown table (README and `--config-reference`)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, doc in field_docs(schema):
        shown = "unset" if default is None else str(default).lower() if isinstance(default, bool) else default
        if isinstance(shown, enum.Enum):
            shown = shown.value
        rows.append(f"| `{key}` | {typ} | `{shown}` | {doc} |")
    return "\n".join(rows) + "\n"


# ---- building --------------------------------------------------------------------------------
def _build(schema: type[T], data: dict[str, Any], path: tuple[str, ...], source: str, lines: _KeyLines) -> T:
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{lines.where(source, (*path, key))}: unknown key {_dotted((*path, key))!r}; "
                f"expected one of: {known}"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], (*path, name), source, lines)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = _build(hints[name], {}, (*path, name), source, lines)
            else:
                raise ConfigError(
                    f"{lines.where(source, path)}: missing required key {_dotted((*path, name))!r} "
                    f"({f.metadata.get('doc', _type_name(hints[name]))})"
                )
    try:
        return schema(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{lines.where(source, path)}: [{_dotted(path) or 'top level'}] {exc}") from exc


def _convert(typ: Any, value: Any, path: tuple[str, ...], source: str, lines: _KeyLines) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(
            f"{lines.where(source, path)}: key {_dotted(path)!r} = {value!r}: expected {expected}"
        )

    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {typ} in config schema")
        return _convert(args[0], value, path, source, lines)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise fail("a table")
        return _build(typ, value, path, source, lines)  # type: ignore[arg-type]
    if origin in (list, tuple):
        (item_type, *_rest) = typing.get_args(typ)
        if not isinstance(value, list):
            raise fail(f"a list of {_type_name(item_type)}")
        items = [_convert(item_type, v, (*path, str(i)), source, lines) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _key_type, item_type = typing.get_args(typ)
        if not isinstance(value, dict):
            raise fail("a table")
        return {k: _convert(item_type, v, (*path, k), source, lines) for k, v in value.items()}
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        try:
            return typ(value)
        except ValueError:
            raise fail("one of " + ", ".join(repr(m.value) for m in typ)) from None
    if typ is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if typ is Path:
        if not isinstance(value, str) or not value:
            raise fail("a file path (string)")
        return Path(value)
    raise TypeError(f"unsupported type {typ!r} in config schema at {_dotted(path)}")


def _type_name(typ: Any) -> str:
    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(typ))
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(typ)[0])}"
    if origin is dict:
        return f"table of {_type_name(typing.get_args(typ)[1])}"
    if typ is type(None):
        return "unset"
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in typ)
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
        typ, getattr(typ, "__name__", str(typ))
    )


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


class _KeyLines:
    """Best-effort map from dotted key paths to the line that sets them, for error messages."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        array_counts: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                table = tuple(_split_key(header.group(2)))
                if header.group(1) == "[[":
                    index = array_counts.get(table, 0)
                    array_counts[table] = index + 1
                    self._lines.setdefault(table, number)
                    table = (*table, str(index))
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault((*table, *_split_key(key.group(1))), number)

    def where(self, source: str, path: tuple[str, ...]) -> str:
        for end in range(len(path), 0, -1):
            number = self._lines.get(path[:end])
            if number is not None:
                return f"{source}:{number}"
        return source


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted)
    return [a or b or c for a, b, c in parts]
