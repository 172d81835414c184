"""Hardware and model profiles, and the catalog that finds them by name or path.

Profiles are YAML files under ``hardware_profiles/{gpus,cpus,links,nodes,models}/``
with units in every key name and a ``sources:`` mapping that gives the origin of
every figure (a datasheet, a paper or a measurement). A profile without a
source for one of its figures is refused: numbers nobody can trace are how
simulators drift from reality.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ProfileError, located
from simulator.strict_numbers import refuse_booleans_as_numbers
from simulator.yaml_loading import condense_validation_error, read_yaml_mapping

CATALOG_ROOT = Path(__file__).resolve().parent.parent / "hardware_profiles"

PLAUSIBLE = (1e-9, 1e9)

DTYPE_BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


class Profile(BaseModel):
    """Common shape of a catalog entry: a name, figures, and a source per figure."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    kind: ClassVar[str] = ""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        return refuse_booleans_as_numbers(cls, data)
    # Keys that name other profiles or describe the entry; they need no source.
    unsourced: ClassVar[frozenset[str]] = frozenset({"name", "description", "sources"})

    name: str
    description: str = ""
    sources: dict[str, str] = Field(default_factory=dict)

    @pydantic.field_validator("*", mode="after")
    @classmethod
    def _plausible(cls, value: Any) -> Any:
        # Units are in key names (GiB, GB/s, TFLOPS, W, us, tokens): no real figure is
        # outside [1e-9, 1e9] (or zero), and such numbers overflow or vanish in the cost model.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value and \
                not PLAUSIBLE[0] <= abs(value) <= PLAUSIBLE[1]:
            raise ValueError(f"{value:g} is outside the plausible range [{PLAUSIBLE[0]:g}, {PLAUSIBLE[1]:g}]")
        return value

    @pydantic.model_validator(mode="after")
    def _every_figure_has_a_source(self) -> "Profile":
        given = self.model_fields_set - self.unsourced
        missing = sorted(key for key in given if key not in self.sources)
        if missing:
            raise ValueError(f"no entry in 'sources' for {', '.join(missing)}")
        return self


class GpuProfile(Profile):
    """One accelerator: peak dense throughput per dtype, HBM, power and price."""

    kind: ClassVar[str] = "gpu"
    unsourced: ClassVar[frozenset[str]] = Profile.unsourced | {"vendor", "generation", "form_factor"}

    vendor: str = "nvidia"
    generation: str = ""
    form_factor: str = ""
    memory_gib: float = Field(gt=0)
    hbm_bandwidth_gb_per_s: float = Field(gt=0)
    fp32_tflops: float | None = Field(default=None, gt=0)
    tf32_tflops: float | None = Field(default=None, gt=0)
    bf16_tflops: float | None = Field(default=None, gt=0)
    fp16_tflops: float | None = Field(default=None, gt=0)
    fp8_tflops: float | None = Field(default=None, gt=0)
    int8_tops: float | None = Field(default=None, gt=0)
    tdp_w: float = Field(gt=0)
    idle_w: float = Field(ge=0)
    usd_per_hour: float = Field(ge=0)

    def peak_flops(self, dtype: str) -> float:
        """Dense peak in FLOP/s for ``dtype``; fp16 and bf16 stand in for each other."""
        candidates = {"fp16": ("fp16", "bf16"), "bf16": ("bf16", "fp16"), "int8": ("int8",)}
        for key in candidates.get(dtype, (dtype,)):
            value = getattr(self, f"{key}_tops" if key == "int8" else f"{key}_tflops", None)
            if value:
                return value * 1e12
        raise ProfileError(f"gpu {self.name}: no peak throughput for dtype {dtype}")

    @pydantic.model_validator(mode="after")
    def _idle_below_tdp(self) -> "GpuProfile":
        # Busy power is interpolated between idle and TDP: TDP below idle would make work save energy.
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) must be below tdp_w ({self.tdp_w:g})")
        return self

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_bandwidth_gb_per_s * 1e9


class CpuProfile(Profile):
    """A host CPU socket: cores and DRAM bandwidth."""

    kind: ClassVar[str] = "cpu"
    unsourced: ClassVar[frozenset[str]] = Profile.unsourced | {"vendor"}

    vendor: str = ""
    cores: int = Field(gt=0)
    dram_bandwidth_gb_per_s: float = Field(gt=0)
    max_dram_gib: float | None = Field(default=None, gt=0)
    tdp_w: float | None = Field(default=None, gt=0)


class LinkProfile(Profile):
    """An interconnect: bandwidth per direction (per GPU for GPU links) and latency."""

    kind: ClassVar[str] = "link"
    unsourced: ClassVar[frozenset[str]] = Profile.unsourced | {"family"}

    family: Literal["nvlink", "pcie", "infiniband", "roce", "ethernet", "xgmi", "nvlink-c2c"] = "nvlink"
    bandwidth_gb_per_s: float = Field(gt=0)
    latency_us: float = Field(ge=0)

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_gb_per_s * 1e9

    @property
    def latency_s(self) -> float:
        return self.latency_us * 1e-6


class NodeProfile(Profile):
    """A server: its GPUs, how they are linked to each other, the host and the network."""

    kind: ClassVar[str] = "node"
    unsourced: ClassVar[frozenset[str]] = Profile.unsourced | {
        "gpu", "intra_node_link", "inter_node_link", "host_link", "host_cpu"}

    gpu: str
    gpus_per_node: int = Field(gt=0)
    # GPUs that share the fast intra-node link (8 on NVSwitch, 2 for NVLink pairs);
    # tensor parallelism wider than this falls back to the host link.
    nvlink_domain_gpus: int = Field(default=0, ge=0)
    intra_node_link: str
    inter_node_link: str
    host_link: str
    host_cpu: str
    host_cpu_sockets: int = Field(gt=0)
    host_dram_gib: float = Field(gt=0)
    usd_per_hour: float | None = Field(default=None, ge=0)

    @pydantic.model_validator(mode="after")
    def _domain_within_node(self) -> "NodeProfile":
        if self.nvlink_domain_gpus > self.gpus_per_node:
            raise ValueError(f"nvlink_domain_gpus ({self.nvlink_domain_gpus}) exceeds gpus_per_node "
                             f"({self.gpus_per_node})")
        return self


class ModelSpec(Profile):
    """A decoder-only transformer: shapes that set FLOPs, weight bytes and KV bytes."""

    kind: ClassVar[str] = "model"
    unsourced: ClassVar[frozenset[str]] = Profile.unsourced | {"family", "dtype", "gated_mlp"}

    family: str = ""
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    ffn_hidden_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context_tokens: int = Field(gt=0)
    gated_mlp: bool = True
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8"] = "bf16"
    num_experts: int = Field(default=1, gt=0)
    experts_per_token: int = Field(default=1, gt=0)

    @pydantic.model_validator(mode="after")
    def _shapes_agree(self) -> "ModelSpec":
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token must not exceed num_experts")
        return self

    @property
    def dtype_bytes(self) -> float:
        return DTYPE_BYTES[self.dtype]

    @cached_property
    def kv_bytes_per_token(self) -> float:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x dtype bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @cached_property
    def params_per_layer(self) -> float:
        """Weights of one layer (attention projections plus all experts' MLPs)."""
        q_out = self.num_attention_heads * self.head_dim
        kv_out = 2 * self.num_kv_heads * self.head_dim
        attention = self.hidden_size * (q_out + kv_out) + q_out * self.hidden_size
        mlp_mats = 3 if self.gated_mlp else 2
        mlp = mlp_mats * self.hidden_size * self.ffn_hidden_size * self.num_experts
        return float(attention + mlp)

    @cached_property
    def total_params(self) -> float:
        embeddings = 2 * self.vocab_size * self.hidden_size
        return self.num_layers * self.params_per_layer + embeddings


PROFILE_TYPES: dict[str, type[Profile]] = {
    "gpu": GpuProfile, "cpu": CpuProfile, "link": LinkProfile, "node": NodeProfile, "model": ModelSpec}


class Catalog:
    """Finds profiles by name in catalog folders, or by path to a YAML file.

    Args:
        roots: folders laid out as ``<root>/<kind>s/<name>.yaml``; later roots
            may not redefine a name (that would make results depend on order).
    """

    def __init__(self, roots: tuple[Path, ...] = (CATALOG_ROOT,)) -> None:
        self.roots = roots
        self._cache: dict[tuple[str, str], Profile] = {}

    def names(self, kind: str) -> list[str]:
        """Every profile name of ``kind`` in the catalog folders, sorted."""
        found = {p.stem for root in self.roots for p in (root / f"{kind}s").glob("*.yaml")}
        return sorted(found)

    def get(self, kind: str, ref: str, base_dir: Path | None = None) -> Any:
        """The profile ``ref`` of ``kind``: a catalog name or a path to a YAML file."""
        # A path is cached by the file it resolves to: "node.yaml" next to two experiments is two files.
        path = self.locate(kind, ref, base_dir) if _is_path(ref) else None
        key = (kind, ref if path is None else str(path.resolve()))
        if key not in self._cache:
            self._cache[key] = self._load(kind, path or self.locate(kind, ref, base_dir))
        return self._cache[key]

    def locate(self, kind: str, ref: str, base_dir: Path | None = None) -> Path:
        """The file of profile ``ref``: a path (relative to ``base_dir``), or a catalog name's file."""
        if _is_path(ref):
            path = Path(ref).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.exists():
                raise ProfileError(located(path, "", f"{kind} profile file not found"))
            return path
        for root in self.roots:
            path = root / f"{kind}s" / f"{ref}.yaml"
            if path.exists():
                return path
        known = ", ".join(self.names(kind)) or "none"
        raise ProfileError(f"unknown {kind} '{ref}'; known {kind}s: {known}")

    @staticmethod
    def _load(kind: str, path: Path) -> Profile:
        data = read_yaml_mapping(path, ProfileError, shipped=is_shipped(path))
        try:
            return PROFILE_TYPES[kind].model_validate(data)
        except pydantic.ValidationError as err:
            raise ProfileError(condense_validation_error(err, path)) from None


def is_shipped(path: Path) -> bool:
    """Whether ``path`` is one of the files in servesim's own ``hardware_profiles``."""
    return path.resolve().is_relative_to(CATALOG_ROOT)


def _is_path(ref: str) -> bool:
    """Whether a profile reference is a path to a YAML file rather than a catalog name."""
    return ref.endswith((".yaml", ".yml")) or "/" in ref


DEFAULT_CATALOG = Catalog()
