"""Hypothesis strategies and checks shared by the fuzz tests (tests/test_fuzz_*.py).

The contract every input reader keeps: it either succeeds or raises a
``ServesimError`` whose message is one non-empty line naming where the problem
is; any other exception is a bug. ``outcome`` runs a call and enforces that.
``mutated`` damages a valid mapping at random places: values replaced by
hostile ones (NaN, infinities, huge and negative numbers, wrong types, deep
nesting), keys deleted, renamed or added, containers wrapped.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from simulator.errors import ServesimError

# How many examples a fuzz test runs: ``base`` under the "ci" profile, scaled up under "long".
_CI_EXAMPLES = 25


def examples(base: int) -> int:
    return max(1, round(base * settings.default.max_examples / _CI_EXAMPLES))


def fuzz_settings(base: int) -> settings:
    """Settings of a fuzz test: the active profile with ``base`` examples scaled by it."""
    return settings(max_examples=examples(base))


# ------------------------------------------------------------------ hostile values
HUGE_INTS = [2**31, 2**31 - 1, 2**53 + 1, 2**63, 2**63 - 1, 2**64, 10**30, -(2**63), -1, 0]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 1e-300]
SPECIAL_TEXT = ["", " ", "nan", "inf", "-1", "1e309", "0x10", "null", "~", "yes", "no", "\x00", "é",
                "../../../etc/passwd", "/dev/zero", "-", "a" * 300, "{", "[", "*", "&a", "!!python/none",
                "policies.routing.simple:RoundRobinRouter", "auto", "csv", "poisson", "fixed"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL_FLOATS),
    st.text(max_size=12), st.sampled_from(SPECIAL_TEXT),
)
# Keys are strings (YAML allows others; pydantic refuses them): include some odd ones.
keys = st.one_of(st.text(min_size=1, max_size=10), st.sampled_from(["name", "dist", "path", "kind", "process",
                                                                   "count", "0", "tokens", "zip", "seed"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=12)


def deep(depth: int, leaf: Any = 1) -> Any:
    """A value nested ``depth`` levels deep, alternating mappings and lists."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


# ------------------------------------------------------------------ mutations
def _containers(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every mapping and list inside ``value`` (the root included)."""
    found = []
    if isinstance(value, dict):
        found.append(path)
        for key, child in value.items():
            found += _containers(child, (*path, key))
    elif isinstance(value, list):
        found.append(path)
        for index, child in enumerate(value):
            found += _containers(child, (*path, index))
    return found


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], max_mutations: int = 4) -> dict[str, Any]:
    """``base`` with 1 to ``max_mutations`` random damages."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _containers(data)
        if not paths:
            break
        container = _at(data, draw(st.sampled_from(paths)))
        members = list(container) if isinstance(container, dict) else list(range(len(container)))
        operation = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap", "deep",
                                          "rename", "scale"]))
        if operation == "add" or not members:
            if isinstance(container, dict):
                container[draw(keys)] = draw(values)
            else:
                container.append(draw(values))
            continue
        member = draw(st.sampled_from(members))
        if operation == "replace":
            container[member] = draw(values)
        elif operation == "delete":
            del container[member]
        elif operation == "wrap":
            container[member] = draw(st.sampled_from([[container[member]], {"x": container[member]}]))
        elif operation == "deep":
            container[member] = deep(draw(st.integers(2, 60)), container[member])
        elif operation == "rename" and isinstance(container, dict):
            container[draw(keys)] = container.pop(member)
        elif operation == "scale":
            old = container[member]
            if isinstance(old, (int, float)) and not isinstance(old, bool):
                factor = draw(st.sampled_from([-1, 0, 1e-9, 1e9, 1e300, math.inf, math.nan, 2**40]))
                new = old * factor
                container[member] = int(new) if isinstance(old, int) and math.isfinite(new) else new
            else:
                container[member] = draw(values)
    return data


# ------------------------------------------------------------------ the contract
def outcome(call: Callable[[], Any], *, names: Callable[[str], bool] | None = None) -> Any:
    """``call()``'s result, or the ``ServesimError`` it raised, checked to be one line that ``names`` accepts.

    Any other exception propagates, so the fuzz test fails with it (and hypothesis shrinks the input).
    """
    try:
        return call()
    except ServesimError as err:
        message = str(err)
        assert message.strip(), f"{type(err).__name__} with an empty message"
        assert len(message.splitlines()) == 1, f"message is not one line: {message!r}"
        if names is not None:
            assert names(message), f"message does not say where: {message!r}"
        return err


def finite_json(value: Any) -> str:
    """``value`` as JSON, refusing NaN and infinities (raises ValueError)."""
    return json.dumps(value, allow_nan=False, default=str)
