"""The composition root: turns an ``Experiment`` into a simulation, runs it, writes results.

Only this module builds objects from configuration: instances with their KV
caches, cost and power models, policies from the registries, RNG streams and
the recorder. Everything else receives its collaborators through constructors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy
import yaml

from simulator import __version__, atomic
from simulator.collection import collections_for_a_run
from simulator.config import Experiment, InstanceHardware, resolved_dict
from simulator.engine.actions import ClusterActions, instance_ports
from simulator.engine.cluster import Cluster
from simulator.engine.links import Network
from simulator.engine.host import HostKVTier
from simulator.engine.instance import Instance, InstanceSetup
from simulator.engine.kv_cache import KVCache
from simulator.engine.retention import RetentionManager
from simulator.engine.workflow_kv import WorkflowRouter
from simulator.errors import ConfigError, ProfileError, located
from simulator.metrics.gap_buffer import GapBuffer
from simulator.metrics.histogram import LogHistogram
from simulator.metrics.recorder import RequestRecorder
from simulator.metrics.run_stats import EventCounts, InstanceStats, RunStats
from simulator.metrics.sampler import TimeSeriesSampler
from simulator.metrics.summary import summarize
from simulator.perf.calibration import GpuCalibration, instance_perf, resolve, select_calibrations
from simulator.perf.power import PowerModel
from simulator.policy_api import PolicyContext
from simulator.registry import (ADMISSION_POLICIES, BATCH_POLICIES, CLUSTER_CONTROLLERS, EVICTION_POLICIES,
                                ROUTERS, WORKFLOW_POLICIES)
from simulator.rng import stream
from workloads import build_workload


@dataclass
class RunResult:
    """What a run produced: the summary, the per-request table and the raw totals."""

    summary: dict[str, Any]
    requests: pd.DataFrame
    stats: RunStats
    resolved_config: dict[str, Any]
    timeseries: pd.DataFrame | None = None  # per-instance samples (None: sampling off)
    sessions: pd.DataFrame | None = None  # one row per session (None: no sessions)


class Simulation:
    """A built, not yet run, simulation of one experiment."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        config = experiment.config
        self.env = simpy.Environment()
        self.recorder = RequestRecorder()
        self.gap_histogram = GapBuffer(LogHistogram())
        self.instance_stats: list[InstanceStats] = []
        self.router = ROUTERS.create(config.policies.router, f"{experiment.path}: policies.router")
        self.cluster = Cluster(self.env, self.router, self.recorder, experiment.model.max_context_tokens,
                               config.cluster.block_size_tokens)
        self.network = Network(self.env)
        self._group_perf: dict[int, Any] = {}
        for hardware in experiment.groups:
            for _ in range(hardware.group.count):
                self._add_instance(hardware)
        self.actions = ClusterActions(self.env, self.cluster, self.network, experiment.model.kv_bytes_per_token,
                                      max(h.network_link.latency_s for h in experiment.groups),
                                      experiment.model.num_layers)
        self.router.setup(self._context("router", None))
        self._bind_cluster(self.router)
        self.retention = self._retention() if config.policies.workflow is not None else None
        self.controller = None
        if config.policies.controller is not None:
            self.controller = CLUSTER_CONTROLLERS.create(config.policies.controller,
                                                         f"{experiment.path}: policies.controller")
            self.controller.setup(self._context("controller", None))
            self._bind_cluster(self.controller)
        with _naming_workload_errors(experiment.path):
            self.workload = build_workload(config.workload, stream(config.seed, "workload"), experiment.base_dir,
                                           max_context_tokens=experiment.model.max_context_tokens)
        interval = config.sim.sample_interval_s
        self.sampler = None if interval is None else TimeSeriesSampler(self.env, self.cluster.instances, interval,
                                                                     config.sim.max_samples)

    def _context(self, name: str, instance_id: int | None, tag: str | None = None) -> PolicyContext:
        config, model = self.experiment.config, self.experiment.model
        index = () if instance_id is None else (instance_id,)
        return PolicyContext(stream(config.seed, name, *index), len(self.instance_stats),
                             config.cluster.block_size_tokens, model.kv_bytes_per_token,
                             model.max_context_tokens, instance_id, tag)

    def _bind_cluster(self, policy) -> None:
        """Hand the cluster actions to a policy that asks for them (``bind_cluster``)."""
        bind = getattr(policy, "bind_cluster", None)
        if bind is not None:
            bind(self.actions)

    def _add_instance(self, hardware: InstanceHardware) -> None:
        config, model = self.experiment.config, self.experiment.model
        instance_id = len(self.cluster.instances)
        group, gpu = hardware.group, hardware.gpu
        gpus = group.tp * group.pp
        # One cost model per instance group: its instances then share the memo of step costs.
        perf = self._group_perf.get(id(hardware))
        if perf is None:
            perf = self._group_perf[id(hardware)] = instance_perf(
                model, gpu, group.tp, group.pp, hardware.tp_link, hardware.pp_link,
                resolve(gpu, self._calibrations()), config.perf.efficiencies.model_dump(exclude_none=True),
                config.perf.host_overhead_per_step_s, config.perf.host_overhead_per_sequence_s,
                group.power_cap_fraction)
        cost, efficiencies, roofline = perf.cost, perf.efficiencies, perf.cost.roofline
        kv = KVCache(hardware.kv_blocks, config.cluster.block_size_tokens, 0)
        kv.watermark_blocks = int(kv.total_blocks * config.cluster.watermark_fraction)
        cap_w = None if group.power_cap_fraction is None else group.power_cap_fraction * gpu.tdp_w
        power = PowerModel(gpu, gpus, roofline.compute_flops * efficiencies.sustained("gemm_compute"),
                           roofline.hbm_bytes_per_s * efficiencies.sustained("gemm_memory"), power_cap_w=cap_w)
        stats = InstanceStats(instance_id, gpu.name, gpus, roofline.peak_flops, gpu.hbm_bytes_per_s,
                              gpu.usd_per_hour, kv.total_blocks)
        batching = BATCH_POLICIES.create(config.policies.batching, f"{self.experiment.path}: policies.batching")
        admission = ADMISSION_POLICIES.create(config.policies.admission,
                                              f"{self.experiment.path}: policies.admission")
        context = self._context("instance-policies", instance_id, group.tag)
        admission.setup(context)
        batching.setup(context)
        batching.bind_admission(admission)
        setup = InstanceSetup(instance_id, gpu.name, group.tp, group.pp, batching.step_limits(),
                              model.kv_bytes_per_token, group.tag, config.sim.fast_forward,
                              config.sim.check_invariants, config.sim.watchdog_steps)
        self.instance_stats.append(stats)
        egress, ingress = instance_ports(instance_id)
        for port in (egress, ingress):
            self.network.add_port(port, hardware.network_link.bytes_per_s * gpus)
        self.cluster.add_instance(Instance(self.env, setup, kv, self._host_tier(hardware), cost, power,
                                           batching, stats, self.gap_histogram, self.cluster.request_done))

    def _calibrations(self) -> dict[str, GpuCalibration]:
        """The fitted performance parameters ``perf.calibration`` selects (read once per run)."""
        if not hasattr(self, "_calibration_set"):
            try:
                self._calibration_set = select_calibrations(self.experiment.config.perf.calibration,
                                                            self.experiment.base_dir)
            except ProfileError as err:
                raise ConfigError(located(self.experiment.path, "perf.calibration", str(err))) from None
        return self._calibration_set

    def _host_tier(self, hardware: InstanceHardware) -> HostKVTier | None:
        cluster = self.experiment.config.cluster
        if cluster.preemption != "swap":
            return None
        gpus = hardware.group.tp * hardware.group.pp
        share_of_node = hardware.node.host_dram_gib * gpus / hardware.node.gpus_per_node
        capacity_gib = min(cluster.swap_space_gib_per_gpu * gpus, share_of_node)
        return HostKVTier(capacity_gib * 2**30, hardware.host_link)

    def run(self) -> RunResult:
        """Run to completion (or the horizon) and condense the results."""
        config = self.experiment.config
        started = time.perf_counter()
        arrivals = self.cluster.start_arrivals(self.workload)
        if self.sampler is not None:
            self.sampler.start()
        until = self.cluster.done
        if config.sim.horizon_s is not None:
            until = self.env.any_of([self.cluster.done, self.env.timeout(config.sim.horizon_s)])
        with _naming_workload_errors(self.experiment.path), collections_for_a_run():
            self.env.run(until=until)  # the workload is read as the run goes
            _raise_failure_at_the_end([arrivals, *(instance.process for instance in self.cluster.instances)])
        now = self.env.now
        for instance in self.cluster.instances:
            # Commits a fast-forward run's finished steps first; auto-scaled instances pay idle power
            # only while provisioned.
            active_s = self.actions.pool.provisioned_s(instance.id, now) if self.actions.pool.changed else None
            instance.finalize(now, active_s)
            self.instance_stats[instance.id].active_s = active_s
        self.cluster.record_unfinished()
        stats = RunStats(now, time.perf_counter() - started, sum(s.steps for s in self.instance_stats),
                         self.instance_stats, self._events(), self.gap_histogram.flush(),
                         {**self._workload_extra(), **self._retention_extra(), **self._scaling_extra(now)})
        requests = self.recorder.to_frame()
        tct = self.cluster.sessions.completed_tct_s()
        summary = summarize(requests, stats, experiment=config.name, seed=config.seed, version=__version__,
                            slo_ttft_s=config.slo.ttft_s, slo_tpot_s=config.slo.tpot_s,
                            slo_max_tpot_s=config.slo.max_tpot_s,
                            workflow_tct_s=np.asarray(tct) if self._has_workflows() else None)
        timeseries = None if self.sampler is None else self.sampler.to_frame()
        sessions = None
        if self.cluster.sessions.records:
            sessions = pd.DataFrame([dataclasses.asdict(r) for r in self.cluster.sessions.records.values()])
        return RunResult(summary, requests, stats, resolved_dict(config), timeseries, sessions)

    def _retention(self) -> RetentionManager:
        """Workflow KV retention: the workflow and eviction policies, and a host tier per instance."""
        config, model, where = self.experiment.config, self.experiment.model, self.experiment.path
        policy = WORKFLOW_POLICIES.create(config.policies.workflow, f"{where}: policies.workflow")
        policy.setup(self._context("workflow", None))
        eviction = EVICTION_POLICIES.create(config.policies.eviction or {"name": "lru"}, f"{where}: policies.eviction")
        eviction.setup(self._context("eviction", None))
        bind = getattr(eviction, "bind_workflow", None)
        if bind is not None:
            bind(policy)
        hosts, instance_id = {}, 0
        for hardware in self.experiment.groups:
            for _ in range(hardware.group.count):
                hosts[instance_id] = self._retention_host(hardware)
                instance_id += 1
        manager = RetentionManager(self.env, self.cluster.instances, policy, eviction, hosts,
                                   model.kv_bytes_per_token, config.cluster.block_size_tokens,
                                   config.sim.sample_interval_s or 1.0)
        self.cluster.sessions.hooks = manager
        self.cluster.router = WorkflowRouter(self.router, manager)
        return manager

    def _retention_host(self, hardware: InstanceHardware) -> HostKVTier:
        """Host DRAM for offloaded workflow KV: the instance's share of the node's, less swap space."""
        cluster = self.experiment.config.cluster
        gpus = hardware.group.tp * hardware.group.pp
        share = hardware.node.host_dram_gib * gpus / hardware.node.gpus_per_node
        swap = cluster.swap_space_gib_per_gpu * gpus if cluster.preemption == "swap" else 0.0
        return HostKVTier(max(0.0, share - swap) * 2**30, hardware.host_link)

    def _retention_extra(self) -> dict[str, Any]:
        return {} if self.retention is None else {"workflow_kv": self.retention.stats.to_summary()}

    def _scaling_extra(self, now: float) -> dict[str, Any]:
        """Instance-hours and migrations, for runs with a cluster controller (auto-scaling, migration)."""
        if self.controller is None:
            return {}
        pool, records = self.actions.pool, self.actions.migrator.records
        downtimes = [r.downtime_s for r in records if r.completed]
        return {"scaling": {"instance_hours": pool.instance_hours(now),
                            "mean_instances": pool.instance_hours(now) * 3600 / now if now > 0 else None,
                            "scale_ups": pool.scale_ups, "scale_downs": pool.scale_downs},
                "migration": {"started": len(records), "completed": len(downtimes),
                              "aborted": sum(1 for r in records if r.ended_s is not None and not r.completed),
                              "downtime_s_mean": sum(downtimes) / len(downtimes) if downtimes else None,
                              "downtime_s_max": max(downtimes) if downtimes else None}}

    def _has_workflows(self) -> bool:
        return any(r.kind == "workflow" for r in self.cluster.sessions.records.values())

    def _workload_extra(self) -> dict[str, Any]:
        stats = getattr(self.workload, "stats", None)
        return {} if stats is None else {"workload": dataclasses.asdict(stats)}

    def _events(self) -> EventCounts:
        columns = self.recorder.columns
        return EventCounts(preemptions=sum(columns["num_preemptions"]),
                           prefix_hit_tokens=sum(columns["prefix_hit_tokens"]),
                           kv_transfer_bytes=self.network.bytes_delivered,
                           migrations=self.actions.migrator.completed)


def _raise_failure_at_the_end(processes: list[simpy.Process]) -> None:
    """Raise the error of a process that failed in the instant the run ended.

    SimPy re-raises a process's error when its failure event is processed; when the last
    request ended in the same step (an invariant check after the final commit, say), the run
    stops on ``done`` first and that event never is: the error would be lost.
    """
    for process in processes:
        if process.triggered and not process.ok:
            process.defused = True
            raise process.value


@contextmanager
def _naming_workload_errors(path: Path | None) -> Iterator[None]:
    """Prefix the experiment file to a ``ConfigError`` about its ``workload`` section.

    The workload names the field it found wrong but not the file holding it; it is built
    lazily, so such errors come both from building it and from reading it during the run.
    """
    try:
        yield
    except ConfigError as err:
        if not str(err).startswith("workload"):
            raise
        raise ConfigError(located(path, "", str(err))) from None


def run_experiment(experiment: Experiment) -> RunResult:
    """Build and run one experiment."""
    return Simulation(experiment).run()


def check_output_dir(out_dir: Path) -> Path:
    """``out_dir`` made absolute; a ``ConfigError`` if it exists and is not a run folder.

    Writing a run replaces its folder, so only an empty folder or an earlier
    run's (one with a ``summary.json``) may be there: ``-o .`` or ``-o ~`` must
    never delete what the user keeps there.
    """
    out_dir = atomic.check_destination(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                      and not (out_dir / "summary.json").is_file())):
        raise ConfigError(f"{out_dir}: exists and is not a run folder (no summary.json); "
                          "refusing to replace it, choose another output folder")
    return out_dir


def write_outputs(result: RunResult, out_dir: Path, with_report: bool = True) -> Path:
    """Write summary.json, requests.csv, config.resolved.yaml, timeseries.csv and the report, atomically.

    Everything goes to a temporary folder beside ``out_dir`` that is renamed
    into place at the end, so an interrupted run leaves no partial folder.
    """
    out_dir = check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = atomic.staging_dir(out_dir)
    try:
        (staging / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
        result.requests.to_csv(staging / "requests.csv", index=False)
        if result.sessions is not None:
            result.sessions.to_csv(staging / "sessions.csv", index=False)
        (staging / "config.resolved.yaml").write_text(yaml.safe_dump(result.resolved_config, sort_keys=False))
        if result.timeseries is not None:
            result.timeseries.to_csv(staging / "timeseries.csv", index=False)
        if with_report:
            # Imported here: the report pulls in matplotlib (~0.35 s), which a run itself never needs.
            from simulator.report.markdown import write_report
            write_report(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
