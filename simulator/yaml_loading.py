"""Strict YAML reading shared by experiments and hardware profiles.

YAML is always read with the safe loader (no object construction), and any
problem becomes one line naming the file and, where known, the line and field.
Pydantic validation errors are condensed to the first offending dotted field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import yaml

from simulator.errors import ServesimError, located


def read_yaml_mapping(path: Path, error_cls: type[ServesimError]) -> dict[str, Any]:
    """Parse ``path`` as a YAML mapping, raising ``error_cls`` with a location on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls(located(path, "", "file not found")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_cls(located(path, "", f"cannot read file ({exc.__class__.__name__})")) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise error_cls(located(path, where, f"invalid YAML: {exc.problem}")) from None
    except yaml.YAMLError as exc:
        raise error_cls(located(path, "", f"invalid YAML: {exc}")) from None
    if not isinstance(data, dict):
        raise error_cls(located(path, "", "expected a YAML mapping at the top level"))
    return data


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
