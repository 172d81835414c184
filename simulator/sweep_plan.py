"""Turning an experiment and a ``SweepSpec`` into validated runs, before anything runs.

An ``ExperimentSource`` is the experiment file's raw mapping with ``--set``
overrides applied. ``plan_runs`` applies each point's values and seed to a
copy, validates and resolves it exactly as ``servesim run`` would, builds its
policies once to check their parameters, and names it by its ``config_hash``.
Any invalid key or value stops the sweep here with one line naming the key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import ExperimentConfig, apply_override, resolve, resolved_dict, validate
from simulator.errors import ConfigError, ServesimError
from simulator.hardware import DEFAULT_CATALOG
from simulator.registry import ADMISSION_POLICIES, BATCH_POLICIES, ROUTERS, imports_allowed
from simulator.sweep_run import RunTask, config_hash
from simulator.sweep_spec import SEED_KEY, SweepSpec, spec_from_mapping
from simulator.yaml_loading import read_yaml_mapping

POINTS_DIR = "points"


@dataclass(frozen=True)
class ExperimentSource:
    """An experiment file's raw mapping (overrides applied), not yet validated.

    Attributes:
        path: the experiment file (relative paths inside it resolve against its folder).
        data: the YAML mapping with ``--set`` overrides applied.
    """

    path: Path
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentSource:
        """Read ``path`` and apply ``key=value`` overrides."""
        path = Path(path)
        data = read_yaml_mapping(path, ConfigError)
        for override in overrides:
            apply_override(data, override, path)
        return cls(path, data)

    def with_values(self, values: Mapping[str, Any], label: str = "sweep key") -> ExperimentSource:
        """A copy with each dotted key set to its value (as ``--set`` would).

        Values are plain data (numbers, strings, booleans, None, lists and mappings; numpy
        scalars and arrays are taken as numbers and lists); errors name ``label`` and the key.
        """
        data = copy.deepcopy(self.data)
        for key, value in values.items():
            if not isinstance(key, str):
                raise ConfigError(f"{self.path}: {label} {key!r}: expected a dotted key (a string)")
            try:
                text = json.dumps(value, default=_plain_data)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{self.path}: {label} '{key}': {err}") from None
            try:
                apply_override(data, f"{key}={text}", self.path)
            except ConfigError as err:
                raise ConfigError(f"{self.path}: {label} '{key}': {_reason(err)}") from None
        return ExperimentSource(self.path, data)

    @property
    def spec(self) -> SweepSpec:
        """The file's own ``sweep:`` block; raises ``ConfigError`` unless it is a mapping (or absent)."""
        sweep = self.data.get("sweep")
        if sweep is not None and not isinstance(sweep, Mapping):
            raise ConfigError(f"{self.path}: sweep: expected a mapping of dotted key paths to lists of "
                              f"values, got {type(sweep).__name__}")
        return spec_from_mapping(sweep, f"{self.path}: sweep")

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.path.stem)

    def config(self) -> ExperimentConfig:
        """Validated and resolved as one run (the ``sweep:`` block dropped); raises ``ConfigError``."""
        data = {key: value for key, value in self.data.items() if key != "sweep"}
        config = validate(data, self.path)
        resolve(config, self.path, DEFAULT_CATALOG)
        check_policies(config, self.path)
        return config


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its point, parameter values, seed and task."""

    point: int
    params: dict[str, Any]
    seed: int
    task: RunTask

    @property
    def key(self) -> str:
        return self.task.key


def plan_runs(source: ExperimentSource, spec: SweepSpec, out_dir: Path,
              with_report: bool = False) -> list[PlannedRun]:
    """Every (point, seed) of ``spec`` as a validated run; raises before any run on bad input."""
    check_keys(source, spec)
    seeds = spec.seeds or [int(source.data.get(SEED_KEY, 0) or 0)]
    runs = []
    for index, params in enumerate(spec.points()):
        for seed in seeds:
            runs.append(plan_one(source, params, seed, index, out_dir, with_report))
    return runs


def plan_one(source: ExperimentSource, params: dict[str, Any], seed: int, point: int,
             out_dir: Path, with_report: bool = False) -> PlannedRun:
    """One validated run of ``source`` with ``params`` and ``seed``."""
    config = source.with_values({**params, SEED_KEY: seed}).config()
    resolved = resolved_dict(config)
    key = config_hash(resolved)
    task = RunTask(key, str(source.path), resolved, str(Path(out_dir) / POINTS_DIR / key), with_report,
                   imports_allowed())
    return PlannedRun(point, dict(params), seed, task)


def check_keys(source: ExperimentSource, spec: SweepSpec) -> None:
    """Fail on a repeated key, or a key whose first value alone makes the experiment invalid."""
    keys = spec.keys
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"{source.path}: sweep key '{repeated[0]}' is varied twice (grid and zip)")
    first = spec.points()[0] if keys else {}
    for key in keys:
        try:
            source.with_values({key: first[key]}).config()
        except ServesimError as err:
            message = str(err)
            raise ConfigError(message if f"sweep key '{key}'" in message
                              else f"{source.path}: sweep key '{key}': {_reason(err, source.path)}") from None


def check_policies(config: ExperimentConfig, path: Path) -> None:
    """Build each policy once so an unknown name or parameter fails before running."""
    for registry, section in ((ROUTERS, "router"), (BATCH_POLICIES, "batching"),
                              (ADMISSION_POLICIES, "admission")):
        registry.create(getattr(config.policies, section), f"{path}: policies.{section}")


def _plain_data(value: Any) -> Any:
    """numpy scalars and arrays as plain numbers and lists (``json.dumps``'s fallback)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"a value of type {type(value).__name__} is not plain data; expected numbers, strings, "
                    "booleans, None, lists or mappings")


def _reason(err: ServesimError, path: Path | None = None) -> str:
    """The message without a leading ``file:`` or ``--set k=v:`` location."""
    message = str(err)
    if path is not None and message.startswith(f"{path}: "):
        message = message[len(f"{path}: "):]
    if message.startswith("--set "):
        message = message.split(": ", 1)[-1]
    return message
