"""The experiment file: schema, strict loading, ``--set`` overrides and profile resolution.

Loading never runs anything and never writes: it reads the YAML with the safe
loader, applies overrides, validates every field (unknown keys are refused),
and resolves model and hardware names against the catalog. Every failure is a
``ConfigError`` whose one-line message names the file and the dotted field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ConfigError, ProfileError, located
from simulator.hardware import DEFAULT_CATALOG, Catalog, GpuProfile, LinkProfile, ModelSpec, NodeProfile
from simulator.yaml_loading import condense_validation_error, read_yaml_mapping
from workloads import WorkloadConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InstanceGroupConfig(_Strict):
    """``count`` identical instances, each on ``tp x pp`` GPUs of one type."""

    count: int = Field(default=1, gt=0, le=100_000)
    gpu: str | None = None
    node: str | None = None
    tp: int = Field(default=1, gt=0, le=1024)
    pp: int = Field(default=1, gt=0, le=1024)
    tag: str = "mixed"


class ClusterConfig(_Strict):
    """Instances, the node type they live on, and KV memory settings."""

    node: str = "dgx-h100"
    instances: list[InstanceGroupConfig] = Field(min_length=1)
    block_size_tokens: int = Field(default=16, gt=0, le=4096)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    watermark_fraction: float = Field(default=0.01, ge=0, lt=0.5)
    preemption: Literal["recompute", "swap"] = "recompute"
    swap_space_gib_per_gpu: float = Field(default=4.0, ge=0)


class EfficiencyConfig(_Strict):
    """Overrides of the roofline's efficiencies (see simulator.perf.efficiency)."""

    gemm_compute: float | None = Field(default=None, gt=0, le=1)
    gemm_memory: float | None = Field(default=None, gt=0, le=1)
    attention_compute: float | None = Field(default=None, gt=0, le=1)
    attention_memory: float | None = Field(default=None, gt=0, le=1)
    elementwise_compute: float | None = Field(default=None, gt=0, le=1)
    elementwise_memory: float | None = Field(default=None, gt=0, le=1)
    collective_bandwidth: float | None = Field(default=None, gt=0, le=1)
    p2p_bandwidth: float | None = Field(default=None, gt=0, le=1)
    kernel_launch_s: float | None = Field(default=None, ge=0)


class PerfConfig(_Strict):
    """Cost-model parameters: efficiencies and per-step host overhead."""

    efficiencies: EfficiencyConfig = EfficiencyConfig()
    host_overhead_per_step_s: float = Field(default=1e-3, ge=0)
    host_overhead_per_sequence_s: float = Field(default=1e-5, ge=0)


class PoliciesConfig(_Strict):
    """Policy choices by registered name, each with its own parameters."""

    router: dict[str, Any] = Field(default_factory=lambda: {"name": "round_robin"})
    batching: dict[str, Any] = Field(default_factory=lambda: {"name": "vllm"})
    admission: dict[str, Any] = Field(default_factory=lambda: {"name": "aggressive"})


class SloConfig(_Strict):
    """Per-request latency targets; attainment and goodput are measured against them."""

    ttft_s: float | None = Field(default=None, gt=0)
    tpot_s: float | None = Field(default=None, gt=0)


class SimConfig(_Strict):
    """Run control: stop at ``horizon_s`` of simulated time (requests then in flight are unfinished);
    sample per-instance KV use, queue length and batch size every ``sample_interval_s`` (None: off)."""

    horizon_s: float | None = Field(default=None, gt=0)
    sample_interval_s: float | None = Field(default=1.0, gt=0)
    # Collapse decode-only stretches into one wait; false steps one by one (same results).
    fast_forward: bool = True


class ExperimentConfig(_Strict):
    """A whole experiment: model, cluster, workload, policies, SLOs."""

    name: str = Field(min_length=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    model: str
    cluster: ClusterConfig
    workload: WorkloadConfig
    policies: PoliciesConfig = PoliciesConfig()
    slo: SloConfig = SloConfig()
    perf: PerfConfig = PerfConfig()
    sim: SimConfig = SimConfig()
    sweep: dict[str, list[Any]] | None = None


@dataclass(frozen=True)
class InstanceHardware:
    """The resolved hardware of one instance group."""

    group: InstanceGroupConfig
    gpu: GpuProfile
    node: NodeProfile
    tp_link: LinkProfile | None
    pp_link: LinkProfile | None
    host_link: LinkProfile


@dataclass(frozen=True)
class Experiment:
    """A validated experiment with its profiles resolved, ready for the runner."""

    config: ExperimentConfig
    path: Path
    model: ModelSpec
    groups: tuple[InstanceHardware, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# ----------------------------------------------------------------- loading
def load_experiment(path: str | Path, overrides: list[str] = (), catalog: Catalog = DEFAULT_CATALOG) -> Experiment:
    """Read, override, validate and resolve an experiment file."""
    path = Path(path)
    data = read_yaml_mapping(path, ConfigError)
    for override in overrides:
        apply_override(data, override, path)
    return resolve(validate(data, path), path, catalog)


def validate(data: dict[str, Any], path: Path) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigError(condense_validation_error(err, path)) from None


def apply_override(data: dict[str, Any], override: str, path: Path) -> None:
    """Apply ``a.b.0.c=value`` (value parsed as YAML) to the raw mapping."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override}: expected key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {override}: value is not valid YAML") from None
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {override}: '{'.'.join(parts[:depth + 1])}' is not a list index "
                                  f"below {len(node)}")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {override}: '{'.'.join(parts[:depth])}' is not a mapping")


def resolve(config: ExperimentConfig, path: Path, catalog: Catalog) -> Experiment:
    """Look up the model and every instance group's hardware, naming the field on failure."""
    base = path.parent
    model = _lookup(catalog, "model", config.model, base, path, "model")
    groups = []
    for index, group in enumerate(config.cluster.instances):
        where = f"cluster.instances.{index}"
        node_name = group.node or config.cluster.node
        node = _lookup(catalog, "node", node_name, base, path, f"{where}.node" if group.node else "cluster.node")
        gpu = _lookup(catalog, "gpu", group.gpu or node.gpu, base, path, f"{where}.gpu")
        groups.append(_links(catalog, group, gpu, node, path, where))
    _check_trace_paths(config, path)
    return Experiment(config, path, model, tuple(groups))


def _links(catalog: Catalog, group: InstanceGroupConfig, gpu: GpuProfile, node: NodeProfile,
           path: Path, where: str) -> InstanceHardware:
    gpus = group.tp * group.pp
    intra = _lookup(catalog, "link", node.intra_node_link, None, path, f"{where} (node {node.name} intra_node_link)")
    inter = _lookup(catalog, "link", node.inter_node_link, None, path, f"{where} (node {node.name} inter_node_link)")
    host = _lookup(catalog, "link", node.host_link, None, path, f"{where} (node {node.name} host_link)")
    domain = node.nvlink_domain_gpus or node.gpus_per_node
    tp_link = None if group.tp == 1 else intra if group.tp <= domain else host if group.tp <= node.gpus_per_node else inter
    pp_link = None if group.pp == 1 else intra if gpus <= domain else host if gpus <= node.gpus_per_node else inter
    return InstanceHardware(group, gpu, node, tp_link, pp_link, host)


def _lookup(catalog: Catalog, kind: str, ref: str, base: Path | None, path: Path, field: str):
    try:
        return catalog.get(kind, ref, base)
    except ProfileError as err:
        raise ConfigError(located(path, field, str(err))) from None


def _check_trace_paths(config: ExperimentConfig, path: Path) -> None:
    trace = config.workload.trace
    if trace is not None and not (path.parent / trace.path).expanduser().exists():
        raise ConfigError(located(path, "workload.trace.path", f"trace file not found: {trace.path}"))


def resolved_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The configuration with every default filled in (written as config.resolved.yaml)."""
    return config.model_dump(mode="json")
