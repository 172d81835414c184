"""Booleans are not numbers in configuration files.

Pydantic's lax mode turns a YAML ``true`` into 1 (or 1.0) for an integer or
float field, so ``rate_per_s: true`` or ``count: yes`` would be accepted as a
rate of one. Every configuration model (experiments, workloads, profiles,
policies) runs this check before validation; fields that accept booleans
(``bool`` or a union with it) are left alone.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def refuse_booleans_as_numbers(model: type[BaseModel], data: Any) -> Any:
    """``data`` unchanged, or a ``ValueError`` naming the first number-only field given a boolean."""
    if not isinstance(data, dict):
        return data
    for name, value in data.items():
        if isinstance(value, bool):
            field = model.model_fields.get(name)
            if field is not None and _numbers_only(field.annotation):
                raise ValueError(f"{name}: expected a number, got the boolean {str(value).lower()}")
    return data


def _numbers_only(annotation: Any) -> bool:
    """Whether the annotation accepts int or float and not bool (through unions and Annotated)."""
    kinds = set(_members(annotation))
    return bool(kinds & {int, float}) and bool not in kinds


def _members(annotation: Any) -> typing.Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _members(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            yield from _members(member)
    else:
        yield annotation
