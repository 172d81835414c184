"""Strict YAML reading shared by experiments and hardware profiles.

YAML is always read with the safe loader (no object construction), and any
problem becomes one line naming the file and, where known, the line and field.
Pydantic validation errors are condensed to the first offending dotted field.
Documents nested absurdly deep, or whose aliases expand to more values than
any real configuration holds ("billion laughs"), are refused as invalid YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import yaml

from simulator.errors import ServesimError, located

MAX_DEPTH = 64
MAX_VALUES = 1_000_000


class YamlShapeError(yaml.YAMLError):
    """A document that parses but is nested too deeply or expands to too many values."""


class _RefusingDuplicateKeys:
    """Mixin for a safe loader: refuses a key given twice in one mapping (YAML would keep the last
    silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _UniqueKeyLoader(_RefusingDuplicateKeys, yaml.SafeLoader):
    """The safe loader, pure Python: its errors are the ones reported."""


if getattr(yaml, "__with_libyaml__", False):
    class _FastUniqueKeyLoader(_RefusingDuplicateKeys, yaml.CSafeLoader):
        """The safe loader with libyaml's parser, where PyYAML was built with it: five times faster
        (the committed calibrations: 61 -> 12 ms per process). The same Python constructor builds
        the objects. It is used for the files servesim ships only: on malformed text libyaml
        accepts some documents the pure parser refuses (a tab after a value, ``|#``), so whatever
        a user writes is read by the pure parser, and ``tests/test_yaml_loading.py`` checks that
        both read every shipped file alike."""
else:
    _FastUniqueKeyLoader = None


def _load_unique(text: str, shipped: bool = False) -> Any:
    """What ``yaml.safe_load`` does, with the loaders above (subclasses of the safe ones): the pure
    parser's, or for a file servesim ships libyaml's, falling back to the pure parser when it
    refuses the document, so every error, and its message and line, is the pure parser's."""
    if shipped and _FastUniqueKeyLoader is not None:
        try:
            return _load_with(_FastUniqueKeyLoader, text)
        except (yaml.YAMLError, RecursionError):
            pass
    return _load_with(_UniqueKeyLoader, text)


def _load_with(loader_class: type, text: str) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def safe_yaml(text: str, shipped: bool = False) -> Any:
    """``yaml.safe_load`` that also refuses duplicate keys, deep nesting and alias bombs (raises
    ``yaml.YAMLError``); ``shipped``: a file servesim ships, read with libyaml's parser."""
    try:
        data = _load_unique(text, shipped)
    except RecursionError:
        raise YamlShapeError(f"nested more than {MAX_DEPTH} levels deep") from None
    _expanded_size(data, {})
    return data


def _expanded_size(node: Any, seen: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of ``node`` with aliases expanded; shared nodes are measured once."""
    if not isinstance(node, (dict, list)):
        return 1, 0
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = (1, MAX_DEPTH + 1)  # a node that contains itself is infinitely deep
    children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
    values, depth = 1, 0
    for child in children:
        child_values, child_depth = _expanded_size(child, seen)
        values, depth = values + child_values, max(depth, child_depth + 1)
        if depth > MAX_DEPTH:
            raise YamlShapeError(f"nested more than {MAX_DEPTH} levels deep")
        if values > MAX_VALUES:
            raise YamlShapeError(f"expands to more than {MAX_VALUES:,} values (through aliases?)")
    seen[id(node)] = (values, depth)
    return values, depth


def read_yaml_mapping(path: Path, error_cls: type[ServesimError], shipped: bool = False) -> dict[str, Any]:
    """Parse ``path`` as a YAML mapping, raising ``error_cls`` with a location on failure.

    ``shipped``: the file is one of servesim's own (its hardware profiles and calibrations),
    parsed faster (see ``_FastUniqueKeyLoader``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls(located(path, "", "file not found")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_cls(located(path, "", f"cannot read file ({exc.__class__.__name__})")) from None
    try:
        data = safe_yaml(text, shipped)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise error_cls(located(path, where, f"invalid YAML: {one_line(exc.problem or exc.context)}")) from None
    except yaml.YAMLError as exc:
        raise error_cls(located(path, "", f"invalid YAML: {one_line(exc)}")) from None
    if not isinstance(data, dict):
        raise error_cls(located(path, "", "expected a YAML mapping at the top level"))
    return data


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (line breaks included) made one space."""
    return " ".join(str(text).split())


def dotted(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as ``a.b.0.c``."""
    return ".".join(str(part) for part in loc) or "(top level)"


def condense_validation_error(err: pydantic.ValidationError, path: object, prefix: str = "") -> str:
    """One line for the first error of a pydantic ``ValidationError``."""
    first = err.errors(include_url=False)[0]
    loc = tuple(part for part in first["loc"] if not _is_union_tag(part))
    field = ".".join(p for p in (prefix, dotted(loc)) if p and p != "(top level)") or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    message = message.removeprefix("Value error, ")
    return located(path, field, message)


def _is_union_tag(part: Any) -> bool:
    # Pydantic inserts the chosen union member's class name into locations;
    # users never wrote it, so it only confuses the message.
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("function-"))
