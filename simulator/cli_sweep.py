"""``servesim sweep``: run a grid of configurations and seeds, or search each one's capacity.

The sweep comes from the experiment's ``sweep:`` block and ``--grid`` /
``--zip`` options (see ``simulator.sweep_spec``). With ``--capacity`` every
point instead gets a search for the highest arrival rate that meets the SLO
attainment target (see ``simulator.capacity``). Exit status: 0 when every run
succeeded, 1 when some failed (each is reported), 2 on invalid input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simulator.sweep_backends import BACKENDS, make_backend


def register(commands) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to ``commands`` and return its parser."""
    parser = commands.add_parser("sweep", help="run a sweep of configurations and seeds (or a capacity search)")
    parser.add_argument("experiment", type=Path, help="experiment YAML file (its sweep: block is the default grid)")
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: runs/<name>-sweep)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value for every run (repeatable)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="vary KEY over the values (YAML), crossed with the rest; seed=0,1,2 sets replications")
    parser.add_argument("--zip", action="append", default=[], metavar="KEY=V1,V2",
                        help="vary these keys together, position by position (repeatable)")
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="where runs execute (default local)")
    parser.add_argument("--address", help="Ray cluster address (with --backend ray; default: start a local Ray)")
    parser.add_argument("--workers", type=int, help="parallel runs (default: the CPUs available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true", help="skip report.md, report.html and figures")
    parser.add_argument("--run-reports", action="store_true", help="also write each run's own report")
    capacity = parser.add_argument_group("capacity search")
    capacity.add_argument("--capacity", action="store_true",
                          help="find each point's highest rate meeting the SLO attainment target")
    capacity.add_argument("--target", type=float, default=0.9, help="SLO attainment target (default 0.9)")
    capacity.add_argument("--rate-key", default=None, help="the rate key searched "
                          "(default workload.generator.arrivals.rate_per_s)")
    capacity.add_argument("--tolerance", type=float, default=0.05,
                          help="stop when the bracket is this narrow, relative (default 0.05)")
    parser.set_defaults(handler=_sweep)
    return parser


def _sweep(args: argparse.Namespace) -> int:
    from simulator.sweep import default_out_dir, run_sweep
    from simulator.sweep_plan import ExperimentSource
    from simulator.sweep_spec import spec_from_options

    started = time.perf_counter()
    source = ExperimentSource.load(args.experiment, args.overrides)
    spec = spec_from_options(source.spec, args.grid, args.zip)
    out_dir = args.output or default_out_dir(source)
    backend = make_backend(args.backend, args.workers, args.address)
    if args.capacity:
        return _capacity(args, source, spec, out_dir, backend, started)
    result = run_sweep(source, spec, out_dir, backend, quiet=args.quiet, run_reports=args.run_reports,
                       report=not args.no_report)
    print(f"{source.name}: {len(result.results)} runs at {len(result.points)} points "
          f"({result.computed} run, {result.cached} cached, {len(result.failures)} failed) "
          f"in {time.perf_counter() - started:.1f} s")
    for failure in result.failures:
        print(f"failed: {failure}", file=sys.stderr)
    print(f"results in {out_dir}")
    return 1 if result.failures else 0


def _capacity(args, source, spec, out_dir, backend, started: float) -> int:
    from simulator.capacity import DEFAULT_RATE_KEY, CapacityOptions, run_capacity

    options = CapacityOptions(target=args.target, rate_key=args.rate_key or DEFAULT_RATE_KEY,
                              tolerance=args.tolerance)
    result = run_capacity(source, spec, out_dir, backend, options, quiet=args.quiet,
                          report=not args.no_report)
    print(result.table.to_string(index=False))
    print(f"{source.name}: capacity of {len(result.table)} configurations from {result.runs} runs "
          f"in {time.perf_counter() - started:.1f} s")
    for failure in result.failures:
        print(f"failed: {failure}", file=sys.stderr)
    print(f"results in {out_dir}")
    return 1 if result.failures else 0
