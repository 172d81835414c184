"""Tests of the shipped hardware and model catalog.

Every YAML file must load through ``Catalog`` and be named after its file. The
KV-cache sizes are worked out by hand as 2 (K and V) x layers x KV heads x
head_dim x dtype bytes; the parameter counts are the published model sizes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.errors import ProfileError
from simulator.hardware import CATALOG_ROOT, Catalog, GpuProfile, LinkProfile, ModelSpec, NodeProfile

KINDS = ("gpu", "cpu", "link", "node", "model")
CATALOG_FILES = sorted(
    (kind, path) for kind in KINDS for path in (CATALOG_ROOT / f"{kind}s").glob("*.yaml"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def test_catalog_is_not_empty() -> None:
    counts = {kind: sum(1 for k, _ in CATALOG_FILES if k == kind) for kind in KINDS}
    assert all(counts.values()), counts


@pytest.mark.parametrize("kind,path", CATALOG_FILES, ids=lambda v: getattr(v, "stem", v))
def test_every_profile_validates_and_is_named_after_its_file(catalog: Catalog, kind: str, path: Path) -> None:
    profile = catalog.get(kind, path.stem)
    assert profile.name == path.stem
    assert re.fullmatch(r"[a-z0-9]+(?:[-.][a-z0-9]+)*", path.stem), path.stem
    # Same profile when addressed by path instead of by name.
    assert catalog.get(kind, str(path)) == profile


@pytest.mark.parametrize("name,expected", [
    # 2 x 80 layers x 8 KV heads x 128 x 2 bytes (fp16)
    ("llama-2-70b", 327_680),
    # 2 x 32 layers x 32 KV heads x 128 x 2 bytes (fp16)
    ("llama-2-7b", 524_288),
    # 2 x 32 layers x 8 KV heads x 128 x 2 bytes (bf16)
    ("llama-3.1-8b", 131_072),
])
def test_kv_bytes_per_token(catalog: Catalog, name: str, expected: int) -> None:
    assert catalog.get("model", name).kv_bytes_per_token == expected


@pytest.mark.parametrize("name,published", [
    ("llama-2-7b", 6.74e9),
    ("llama-3.1-8b", 8.03e9),
    ("llama-2-70b", 68.98e9),
])
def test_total_params_match_published_sizes(catalog: Catalog, name: str, published: float) -> None:
    total = catalog.get("model", name).total_params
    assert abs(total - published) <= 0.03 * published, (name, total)


def test_node_references_resolve(catalog: Catalog) -> None:
    for name in catalog.names("node"):
        node = catalog.get("node", name)
        assert isinstance(node, NodeProfile)
        assert isinstance(catalog.get("gpu", node.gpu), GpuProfile)
        for link in (node.intra_node_link, node.inter_node_link, node.host_link):
            assert isinstance(catalog.get("link", link), LinkProfile)
        catalog.get("cpu", node.host_cpu)
        assert node.nvlink_domain_gpus <= node.gpus_per_node, name


def test_gpu_dense_figures_are_ordered(catalog: Catalog) -> None:
    """Peak rates should rise as precision falls; a sparse figure slipped in breaks this."""
    for name in catalog.names("gpu"):
        gpu = catalog.get("gpu", name)
        rates = [gpu.fp32_tflops, gpu.tf32_tflops, gpu.bf16_tflops or gpu.fp16_tflops, gpu.fp8_tflops]
        present = [r for r in rates if r is not None]
        assert present == sorted(present), name
        assert 0 <= gpu.idle_w < gpu.tdp_w, name


def test_model_shapes(catalog: Catalog) -> None:
    for name in catalog.names("model"):
        model = catalog.get("model", name)
        assert isinstance(model, ModelSpec)
        assert model.max_context_tokens >= 2048, name
    mixtral = catalog.get("model", "mixtral-8x7b")
    assert (mixtral.num_experts, mixtral.experts_per_token) == (8, 2)
    qwen_moe = catalog.get("model", "qwen3-30b-a3b")
    assert (qwen_moe.num_experts, qwen_moe.experts_per_token, qwen_moe.ffn_hidden_size) == (128, 8, 768)


def test_profile_without_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "links").mkdir()
    path = tmp_path / "links" / "mystery-link.yaml"
    path.write_text(
        "name: mystery-link\n"
        "family: ethernet\n"
        "bandwidth_gb_per_s: 12.5\n"
        "latency_us: 20.0\n"
        "sources:\n"
        "  bandwidth_gb_per_s: IEEE 802.3 100 Gb/s line rate\n",
        encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        Catalog(roots=(tmp_path,)).get("link", "mystery-link")
    message = str(info.value)
    assert str(path) in message
    assert "latency_us" in message
    assert "sources" in message


def test_unknown_name_lists_known_names(catalog: Catalog) -> None:
    with pytest.raises(ProfileError) as info:
        catalog.get("gpu", "h1000-imaginary")
    message = str(info.value)
    assert "h1000-imaginary" in message
    for known in ("a100-80gb", "h100-sxm"):
        assert known in message
