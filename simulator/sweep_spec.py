"""What a sweep varies: grid axes, zipped groups and seeds, from YAML and the command line.

The experiment's ``sweep:`` mapping names dotted config keys (the same keys
``--set`` takes) with lists of values. Plain keys form a grid (every
combination); a ``zip:`` entry holds a list of groups whose keys are varied
together, position by position; groups and the grid are crossed::

    sweep:
      workload.generator.arrivals.rate_per_s: [10, 20, 40]
      policies.router: [{name: jsq, load: tokens}, {name: round_robin}]
      zip:
        - {cluster.instances.0.count: [2, 4], cluster.instances.0.gpu: [a100-80gb, h100-sxm]}
      seed: [0, 1, 2]

``seed`` is the replication axis: runs that differ only in their seed are one
*point*, and tables report means and confidence intervals over them. On the
command line ``--grid KEY=V1,V2`` adds or replaces a grid axis and ``--zip
KEY=V1,V2`` (repeatable) adds one zipped group; values are YAML.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from simulator.errors import ConfigError
from simulator.yaml_loading import safe_yaml

SEED_KEY = "seed"
ZIP_KEY = "zip"


@dataclass(frozen=True)
class SweepSpec:
    """Grid axes, zipped groups and the seeds to replicate every point with.

    Attributes:
        grid: key -> values; every combination is a point.
        zips: groups of keys varied together; each group is key -> equally long values.
        seeds: the replications (empty: the experiment's own seed only).
    """

    grid: dict[str, list[Any]] = field(default_factory=dict)
    zips: list[dict[str, list[Any]]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """Every varied key except the seed, grid first, in the order given."""
        return list(self.grid) + [key for group in self.zips for key in group]

    def points(self) -> list[dict[str, Any]]:
        """Every combination of grid values and zipped positions (without the seed)."""
        factors: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in self.grid.items()]
        factors += [[dict(zip(group, row)) for row in zip(*group.values())] for group in self.zips]
        return [_merge(combo) for combo in itertools.product(*factors)]

    def with_grid(self, key: str, values: list[Any], where: str | None = None) -> SweepSpec:
        """A copy with ``key`` varied over ``values`` (``seed`` sets the replications).

        ``where`` names the axis in errors (default: the ``--grid`` option).
        """
        if key == SEED_KEY:
            return SweepSpec(dict(self.grid), list(self.zips), _seeds(values, where or f"--grid {key}"))
        grid = {k: v for k, v in self.grid.items() if k != key}
        grid[key] = list(values)
        return SweepSpec(grid, list(self.zips), list(self.seeds))

    def with_zip(self, group: dict[str, list[Any]], where: str = "--zip") -> SweepSpec:
        """A copy with one more zipped group (``where`` names it in errors)."""
        _check_zip(group, where)
        return SweepSpec(dict(self.grid), [*self.zips, dict(group)], list(self.seeds))


def spec_from_mapping(sweep: Mapping[str, Any] | None, where: str = "sweep") -> SweepSpec:
    """Parse the experiment's ``sweep:`` mapping (None: an empty spec)."""
    spec = SweepSpec()
    for key, values in (sweep or {}).items():
        if key == ZIP_KEY:
            for index, group in enumerate(_as_list(values, f"{where}.zip")):
                if not isinstance(group, Mapping):
                    raise ConfigError(f"{where}.zip.{index}: expected a mapping of keys to lists of values")
                spec = spec.with_zip({k: _as_list(v, f"{where}.zip.{index}.{k}") for k, v in group.items()},
                                     f"{where}.zip.{index}")
        else:
            spec = spec.with_grid(key, _as_list(values, f"{where}.{key}"), f"{where}.{key}")
    return spec


def spec_from_options(base: SweepSpec, grid: Iterable[str] = (), zips: Iterable[str] = ()) -> SweepSpec:
    """``base`` with ``--grid KEY=V1,V2`` axes and one zipped group of all ``--zip`` options."""
    spec = base
    for option in grid:
        key, values = parse_axis(option, "--grid")
        spec = spec.with_grid(key, values)
    group = dict(parse_axis(option, "--zip") for option in zips)
    return spec.with_zip(group) if group else spec


def parse_axis(option: str, flag: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` (or ``KEY=[V1, V2]``) -> (key, values parsed as YAML)."""
    key, sep, raw = option.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ConfigError(f"{flag} {option}: expected KEY=VALUE1,VALUE2,...")
    text = raw if raw.startswith("[") else f"[{raw}]"
    try:
        values = safe_yaml(text)
    except yaml.YAMLError:
        raise ConfigError(f"{flag} {option}: values are not a valid YAML list") from None
    return key, _as_list(values, f"{flag} {key}")


def value_label(value: Any) -> Any:
    """A short, table-friendly form of a value: numbers stay numbers, policies read ``jsq(load=tokens)``."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        params = ",".join(f"{k}={_scalar(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']}({params})" if params else value["name"]
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def short_key(key: str) -> str:
    """The readable tail of a dotted key: ``policies.router`` -> ``router``, ``a.b.name`` -> ``b``."""
    parts = key.split(".")
    while len(parts) > 1 and (parts[-1] == "name" or parts[-1].isdigit()):
        parts.pop()
    return parts[-1]


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _as_list(values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: expected a non-empty list of values")
    return list(values)


def _check_zip(group: Mapping[str, list[Any]], where: str) -> None:
    if SEED_KEY in group or ZIP_KEY in group:
        raise ConfigError(f"{where}: '{SEED_KEY}' cannot be zipped; give it as a grid axis")
    lengths = {key: len(values) for key, values in group.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{key} has {n}" for key, n in lengths.items())
        raise ConfigError(f"{where}: zipped keys need equally many values ({detail})")


def _seeds(values: list[Any], where: str) -> list[int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(f"{where}: seeds must be non-negative integers")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: seeds repeat")
    return list(values)
