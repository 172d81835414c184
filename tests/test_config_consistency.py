"""Input that parses but contradicts itself or the hardware is refused with one line naming the field.

A boolean where a number is expected (pydantic would read ``true`` as 1) is refused too.

A key given twice in one YAML mapping (the last would silently win), tensor
parallelism that does not divide the model's attention heads, a GPU whose idle
power is not below its TDP, a node whose NVLink domain is larger than the node
or whose host CPU or links nobody profiled (the error names the node's file and
key), swap space larger than the node's host DRAM per GPU, and an eviction
policy with no workflow retention for it to act on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import experiment_dict, write_experiment
from simulator.cli import main
from simulator.config import load_experiment
from simulator.errors import ConfigError, ProfileError
from simulator.hardware import CATALOG_ROOT, Catalog


def _one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path, capsys) -> None:
    path = write_experiment(tmp_path, experiment_dict())
    path.write_text(path.read_text() + "seed: 3\nseed: 4\n")  # the file gives seed already
    line = path.read_text().splitlines().index("seed: 3") + 1  # the first repeat
    message = _one_error_line(capsys, ["validate", str(path)])
    assert f"line {line}" in message and "'seed' is given twice" in message


def test_tensor_parallelism_must_divide_the_attention_heads(tmp_path: Path) -> None:
    data = experiment_dict()
    data["cluster"]["instances"][0]["tp"] = 7
    with pytest.raises(ConfigError, match=r"cluster.instances.0.tp.*7 does not divide .* 32 attention heads"):
        load_experiment(write_experiment(tmp_path, data))


def _profile_copy(tmp_path: Path, kind: str, name: str, **changes) -> Catalog:
    data = yaml.safe_load((CATALOG_ROOT / f"{kind}s" / f"{name}.yaml").read_text())
    data.update(changes)
    (tmp_path / f"{kind}s").mkdir(parents=True, exist_ok=True)
    (tmp_path / f"{kind}s" / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return Catalog(roots=(tmp_path,))


def test_a_gpu_idling_at_or_above_its_tdp_is_refused(tmp_path: Path) -> None:
    catalog = _profile_copy(tmp_path, "gpu", "h100-sxm", tdp_w=10)
    with pytest.raises(ProfileError, match=r"idle_w .* must be below tdp_w \(10\)"):
        catalog.get("gpu", "h100-sxm")


def test_an_nvlink_domain_larger_than_the_node_is_refused(tmp_path: Path) -> None:
    catalog = _profile_copy(tmp_path, "node", "dgx-h100", nvlink_domain_gpus=16)
    with pytest.raises(ProfileError, match=r"nvlink_domain_gpus \(16\) exceeds gpus_per_node \(8\)"):
        catalog.get("node", "dgx-h100")


def test_an_eviction_policy_needs_a_workflow_policy(tmp_path: Path) -> None:
    data = experiment_dict()
    data.setdefault("policies", {})["eviction"] = {"name": "lru"}
    with pytest.raises(ConfigError, match=r"policies.eviction.*needs a policies.workflow"):
        load_experiment(write_experiment(tmp_path, data))


def test_a_node_naming_an_unknown_host_cpu_is_refused(tmp_path: Path) -> None:
    node = yaml.safe_load((CATALOG_ROOT / "nodes" / "dgx-h100.yaml").read_text())
    node["name"], node["host_cpu"] = "my-node", "no-such-cpu"
    (tmp_path / "my-node.yaml").write_text(yaml.safe_dump(node))
    data = experiment_dict()
    data["cluster"]["node"] = "my-node.yaml"
    with pytest.raises(ConfigError, match=r"host_cpu.*no-such-cpu"):
        load_experiment(write_experiment(tmp_path, data))


def _node_file(directory: Path, name: str = "my-node.yaml", **changes) -> Path:
    """A copy of dgx-h100 as its own profile file in ``directory``, with ``changes``."""
    node = yaml.safe_load((CATALOG_ROOT / "nodes" / "dgx-h100.yaml").read_text())
    node.update(name="my-node", **changes)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump(node))
    return directory / name


@pytest.mark.parametrize("key", ["intra_node_link", "inter_node_link", "host_link"])
@pytest.mark.parametrize("field", ["cluster.node", "cluster.instances.0.node"])
def test_a_node_file_naming_an_unknown_link_names_the_file_and_the_key(tmp_path: Path, capsys, key: str,
                                                                        field: str) -> None:
    node = _node_file(tmp_path, **{key: "no-such-link"})
    data = experiment_dict()
    if field == "cluster.node":
        data["cluster"]["node"] = node.name
    else:
        data["cluster"]["instances"][0]["node"] = node.name
    path = write_experiment(tmp_path, data)
    message = _one_error_line(capsys, ["validate", str(path)])
    assert message.startswith(f"servesim: error: {path}: {field}: {node}: {key}: unknown link 'no-such-link'; "
                              "known links: ")


def test_profiles_a_node_file_names_by_path_are_found_next_to_it(tmp_path: Path) -> None:
    link = yaml.safe_load((CATALOG_ROOT / "links" / "nvlink4.yaml").read_text())
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "my-link.yaml").write_text(yaml.safe_dump({**link, "name": "my-link"}))
    _node_file(tmp_path / "hardware", intra_node_link="my-link.yaml")
    data = experiment_dict()
    data["cluster"]["node"] = "hardware/my-node.yaml"
    data["cluster"]["instances"][0]["tp"] = 2
    experiment = load_experiment(write_experiment(tmp_path, data))
    assert experiment.groups[0].tp_link.name == "my-link"


def test_node_files_of_one_name_in_two_folders_are_two_profiles(tmp_path: Path) -> None:
    loaded = []
    for folder, dram in (("a", 1024.0), ("b", 512.0)):
        _node_file(tmp_path / folder, host_dram_gib=dram)
        data = experiment_dict()
        data["cluster"]["node"] = "my-node.yaml"
        loaded.append(load_experiment(write_experiment(tmp_path / folder, data)).groups[0].node.host_dram_gib)
    assert loaded == [1024.0, 512.0]


def test_swap_space_beyond_the_nodes_host_dram_per_gpu_is_refused(tmp_path: Path, capsys) -> None:
    data = experiment_dict()
    data["cluster"].update(preemption="swap", swap_space_gib_per_gpu=1e8)
    path = write_experiment(tmp_path, data)
    message = _one_error_line(capsys, ["validate", str(path)])
    assert message == (f"servesim: error: {path}: cluster.swap_space_gib_per_gpu: 1e+08 GiB exceeds node dgx-h100's "
                       "host DRAM per GPU (2048 GiB / 8 GPUs = 256 GiB); give at most 256")
    data["cluster"]["swap_space_gib_per_gpu"] = 256  # the whole share is allowed
    load_experiment(write_experiment(tmp_path, data))
    data["cluster"].update(preemption="recompute", swap_space_gib_per_gpu=1e8)  # no swapping: unused
    load_experiment(write_experiment(tmp_path, data))


@pytest.mark.parametrize("path, message", [
    (("workload", "generator", "arrivals", "rate_per_s"), "rate_per_s: expected a number, got the boolean true"),
    (("cluster", "instances", 0, "count"), "count: expected a number, got the boolean true"),
    (("policies", "batching", "max_num_seqs"), "max_num_seqs: expected a number, got the boolean true"),
])
def test_a_boolean_where_a_number_is_expected_is_refused(tmp_path: Path, path: tuple, message: str) -> None:
    data = experiment_dict()
    data.setdefault("policies", {}).setdefault("batching", {"name": "vllm"})
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = True
    with pytest.raises(ConfigError, match=message):
        load_experiment(write_experiment(tmp_path, data))


def test_booleans_are_still_booleans(tmp_path: Path) -> None:
    data = experiment_dict()
    data.setdefault("policies", {})["batching"] = {"name": "vllm", "chunked_prefill": True}
    assert load_experiment(write_experiment(tmp_path, data)).config.policies.batching["chunked_prefill"] is True


def test_a_profile_figure_given_as_a_boolean_is_refused(tmp_path: Path) -> None:
    catalog = _profile_copy(tmp_path, "gpu", "h100-sxm", idle_w=True)
    with pytest.raises(ProfileError, match="idle_w: expected a number, got the boolean true"):
        catalog.get("gpu", "h100-sxm")
