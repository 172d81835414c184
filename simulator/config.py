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

from simulator.errors import ConfigError, ProfileError, RegistryError, located
from simulator.strict_numbers import refuse_booleans_as_numbers
from simulator.registry import (ADMISSION_POLICIES, BATCH_POLICIES, CLUSTER_CONTROLLERS, EVICTION_POLICIES,
                                ROUTERS, WORKFLOW_POLICIES)
from simulator.hardware import DEFAULT_CATALOG, Catalog, GpuProfile, LinkProfile, ModelSpec, NodeProfile
from simulator.yaml_loading import condense_validation_error, read_yaml_mapping, safe_yaml
from workloads import WorkloadConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        return refuse_booleans_as_numbers(cls, data)


class InstanceGroupConfig(_Strict):
    """``count`` identical instances, each on ``tp x pp`` GPUs of one type."""

    count: int = Field(default=1, gt=0, le=100_000)
    gpu: str | None = None
    node: str | None = None
    tp: int = Field(default=1, gt=0, le=1024)
    pp: int = Field(default=1, gt=0, le=1024)
    tag: str = "mixed"
    # Cap each GPU's power at this fraction of TDP (Splitwise's 0.7); slows compute (simulator.perf.power).
    power_cap_fraction: float | None = Field(default=None, gt=0, le=1)


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

    gemm_compute: float | None = Field(default=None, ge=1e-3, le=1)
    gemm_memory: float | None = Field(default=None, ge=1e-3, le=1)
    attention_compute: float | None = Field(default=None, ge=1e-3, le=1)
    attention_memory: float | None = Field(default=None, ge=1e-3, le=1)
    elementwise_compute: float | None = Field(default=None, ge=1e-3, le=1)
    elementwise_memory: float | None = Field(default=None, ge=1e-3, le=1)
    collective_bandwidth: float | None = Field(default=None, ge=1e-3, le=1)
    p2p_bandwidth: float | None = Field(default=None, ge=1e-3, le=1)
    kernel_launch_s: float | None = Field(default=None, ge=0, le=1)


class PerfConfig(_Strict):
    """Cost-model parameters: the calibration, efficiency overrides and per-step host overhead.

    ``calibration``: ``auto`` uses the committed fits in hardware_profiles/calibration/ for the
    GPU (or the nearest measured GPU of its generation), ``none`` the uncalibrated defaults, or a
    path to a calibration folder or file. A set efficiency or host overhead overrides the fit;
    unset host overheads come from the calibration (default 1 ms per step, 10 us per sequence).
    """

    calibration: str = "auto"
    efficiencies: EfficiencyConfig = EfficiencyConfig()
    host_overhead_per_step_s: float | None = Field(default=None, ge=0, le=1)
    host_overhead_per_sequence_s: float | None = Field(default=None, ge=0, le=1)


class PoliciesConfig(_Strict):
    """Policy choices by registered name, each with its own parameters."""

    router: dict[str, Any] = Field(default_factory=lambda: {"name": "round_robin"})
    batching: dict[str, Any] = Field(default_factory=lambda: {"name": "vllm"})
    admission: dict[str, Any] = Field(default_factory=lambda: {"name": "aggressive"})
    # A cluster-level policy that acts over time (migration, auto-scaling); none by default.
    controller: dict[str, Any] | None = None
    # Workflow KV retention (SAGA): a workflow policy, and the eviction policy of retained KV
    # (default lru). None: plain prefix caching, no retention mechanism.
    workflow: dict[str, Any] | None = None
    eviction: dict[str, Any] | None = None


class SloConfig(_Strict):
    """Per-request latency targets; attainment and goodput are measured against them.

    ``max_tpot_s`` bounds a request's largest single inter-token gap (the
    Past-Future paper's max-TPOT SLA); with it set the summary also reports
    ``goodput_sla`` (TTFT and max-TPOT met).
    """

    ttft_s: float | None = Field(default=None, gt=0)
    tpot_s: float | None = Field(default=None, gt=0)
    max_tpot_s: float | None = Field(default=None, gt=0)


class SimConfig(_Strict):
    """Run control: stop at ``horizon_s`` of simulated time (requests then in flight are unfinished);
    sample per-instance KV use, queue length and batch size every ``sample_interval_s`` (None: off)."""

    horizon_s: float | None = Field(default=None, gt=0, le=1e9)
    sample_interval_s: float | None = Field(default=1.0, ge=1e-3)
    # Keep at most this many sample times: a longer run doubles the interval and thins
    # what it has, so memory stays bounded however long the run (see metrics/sampler.py).
    max_samples: int = Field(default=10_000, ge=2, le=10_000_000)
    # Collapse decode-only stretches into one wait; false steps one by one (same results).
    fast_forward: bool = True
    # Verify KV accounting, counters and time after every commit (slow; tests turn it on).
    check_invariants: bool = False
    # An instance that runs this many steps in a row without generating a token or ending
    # a request while work is pending is livelocked: the run stops with a SimulationError.
    watchdog_steps: int = Field(default=100_000, gt=0)


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

    @pydantic.field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        # The default output folder is runs/<name>, and writing a run replaces that folder:
        # a name must not point anywhere else.
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError("must be usable as one folder name (no '/', '\\', '.' or '..')")
        return name


@dataclass(frozen=True)
class InstanceHardware:
    """The resolved hardware of one instance group."""

    group: InstanceGroupConfig
    gpu: GpuProfile
    node: NodeProfile
    tp_link: LinkProfile | None
    pp_link: LinkProfile | None
    host_link: LinkProfile
    kv_blocks: int
    network_link: LinkProfile | None = None  # between instances: one NIC of this link per GPU


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
        value = safe_yaml(raw)
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
        node_field = f"{where}.node" if group.node else "cluster.node"
        node_file = _NodeFile(catalog, group.node or config.cluster.node, base, path, node_field)
        gpu = (_lookup(catalog, "gpu", group.gpu, base, path, f"{where}.gpu") if group.gpu
               else node_file.part("gpu", "gpu"))
        _check_power_cap(group, gpu, path, where)
        _check_swap_space(config.cluster, node_file.profile, path)
        if model.num_attention_heads % group.tp:
            # vLLM (and every tensor-parallel engine) splits attention heads evenly over the GPUs.
            raise ConfigError(located(path, f"{where}.tp", f"{group.tp} does not divide model {model.name}'s "
                                                            f"{model.num_attention_heads} attention heads"))
        blocks = _kv_blocks(config, model, group, gpu, path, where)
        groups.append(_links(node_file, group, gpu, blocks))
    _check_trace_paths(config, path)
    _check_policies(config, path)
    return Experiment(config, path, model, tuple(groups))


def _check_power_cap(group: InstanceGroupConfig, gpu: GpuProfile, path: Path, where: str) -> None:
    """A cap must leave the GPU some power above idle (at least 1% of the way from idle to TDP)."""
    cap = group.power_cap_fraction
    if cap is not None and cap * gpu.tdp_w - gpu.idle_w < 0.01 * (gpu.tdp_w - gpu.idle_w):
        least = (gpu.idle_w + 0.01 * (gpu.tdp_w - gpu.idle_w)) / gpu.tdp_w
        raise ConfigError(located(path, f"{where}.power_cap_fraction",
                                  f"a cap of {cap:g} x {gpu.tdp_w:g} W leaves {gpu.name} no power above its "
                                  f"idle {gpu.idle_w:g} W; give at least {least:.3f}"))


def _check_policies(config: ExperimentConfig, path: Path) -> None:
    """Build each policy once so that names and parameters are checked before anything runs."""
    policies = config.policies
    checks = [("router", ROUTERS), ("batching", BATCH_POLICIES), ("admission", ADMISSION_POLICIES)]
    if policies.controller is not None:
        checks.append(("controller", CLUSTER_CONTROLLERS))
    if policies.workflow is not None:
        checks.append(("workflow", WORKFLOW_POLICIES))
    if policies.eviction is not None:
        if policies.workflow is None:
            raise ConfigError(located(path, "policies.eviction", "orders workflows' retained KV; it needs a "
                                                                 "policies.workflow that retains some"))
        checks.append(("eviction", EVICTION_POLICIES))
    instances = sum(group.count for group in config.cluster.instances)
    for field, registry in checks:
        try:
            policy = registry.create(getattr(policies, field), f"{path}: policies.{field}")
        except RegistryError as err:
            raise ConfigError(str(err)) from None
        problem = getattr(policy, "cluster_problem", None)
        problem = problem(instances) if problem is not None else None
        if problem:
            raise ConfigError(located(path, f"policies.{field}", problem))


def _kv_blocks(config: ExperimentConfig, model: ModelSpec, group: InstanceGroupConfig, gpu: GpuProfile,
               path: Path, where: str) -> int:
    """KV blocks of one instance: usable GPU memory minus the weights, in blocks."""
    usable = gpu.memory_bytes * group.tp * group.pp * config.cluster.gpu_memory_utilization
    weights = model.total_params * model.dtype_bytes
    block_bytes = config.cluster.block_size_tokens * model.kv_bytes_per_token
    blocks = int((usable - weights) // block_bytes)
    if blocks < 1:
        raise ConfigError(located(path, where, f"model {model.name} ({weights / 1e9:.1f} GB of weights) leaves "
                                               f"no KV memory on {group.tp * group.pp} x {gpu.name} "
                                               f"({usable / 1e9:.1f} GB usable); raise tp or pp"))
    return blocks


class _NodeFile:
    """A node profile and the file it came from, to name both when a profile it refers to is bad.

    Profiles a node names by path are taken relative to the node's own file, as the
    node's path is taken relative to the experiment's.
    """

    def __init__(self, catalog: Catalog, ref: str, base: Path, path: Path, field: str) -> None:
        self.catalog, self.path, self.field = catalog, path, field
        self.profile: NodeProfile = _lookup(catalog, "node", ref, base, path, field)
        self.file = catalog.locate("node", ref, base)

    def part(self, kind: str, key: str):
        """The ``kind`` profile the node names under ``key``; a ``ConfigError`` naming both files and fields."""
        try:
            return self.catalog.get(kind, getattr(self.profile, key), self.file.parent)
        except ProfileError as err:
            raise ConfigError(located(self.path, self.field, located(self.file, key, str(err)))) from None


def _check_swap_space(cluster: ClusterConfig, node: NodeProfile, path: Path) -> None:
    """Swap space must fit in the node's host DRAM per GPU (it is only used with ``preemption: swap``)."""
    share = node.host_dram_gib / node.gpus_per_node
    if cluster.preemption == "swap" and cluster.swap_space_gib_per_gpu > share:
        raise ConfigError(located(path, "cluster.swap_space_gib_per_gpu",
                                  f"{cluster.swap_space_gib_per_gpu:g} GiB exceeds node {node.name}'s host DRAM "
                                  f"per GPU ({node.host_dram_gib:g} GiB / {node.gpus_per_node} GPUs = "
                                  f"{share:g} GiB); give at most {share:g}"))


def _links(node_file: _NodeFile, group: InstanceGroupConfig, gpu: GpuProfile, kv_blocks: int) -> InstanceHardware:
    node = node_file.profile
    gpus = group.tp * group.pp
    intra = node_file.part("link", "intra_node_link")
    inter = node_file.part("link", "inter_node_link")
    host = node_file.part("link", "host_link")
    # Not used by the cost model yet, but a node naming a CPU nobody profiled is a typo to report now.
    node_file.part("cpu", "host_cpu")
    domain = node.nvlink_domain_gpus or node.gpus_per_node
    tp_link = None if group.tp == 1 else intra if group.tp <= domain else host if group.tp <= node.gpus_per_node else inter
    pp_link = None if group.pp == 1 else intra if gpus <= domain else host if gpus <= node.gpus_per_node else inter
    return InstanceHardware(group, gpu, node, tp_link, pp_link, host, kv_blocks, inter)


def _lookup(catalog: Catalog, kind: str, ref: str, base: Path | None, path: Path, field: str):
    try:
        return catalog.get(kind, ref, base)
    except ProfileError as err:
        raise ConfigError(located(path, field, str(err))) from None


# What a workload path names, by the end of its field (empirical lengths end in "<dist>.path").
_WORKLOAD_FILES = {"trace.path": "trace file", "servegen.path": "ServeGen folder"}


def _check_trace_paths(config: ExperimentConfig, path: Path) -> None:
    """Every file the workload reads exists, so ``validate`` finds a wrong path before anything runs."""
    for field, reference in config.workload.file_references():
        if not (path.parent / Path(reference).expanduser()).exists():
            what = _WORKLOAD_FILES.get(".".join(field.split(".")[-2:]), "length file")
            raise ConfigError(located(path, field, f"{what} not found: {reference}"))


def resolved_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The configuration with every default filled in (written as config.resolved.yaml)."""
    return config.model_dump(mode="json")
