"""``servesim regress``: run experiments and compare them with committed baselines.

``--baseline`` is a baseline file (for one experiment) or a folder of them,
one ``<experiment name>.json`` each; with no experiment given, every baseline
in it is checked against the experiment it records. Exit status 0 when all
metrics are within tolerance, 1 with a diff table per regressed experiment (and
a line per metric the run reports that the baseline lacks), 2 on bad input.
``--update`` (re)writes the baselines from fresh runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.errors import ServesimError


def register(commands) -> argparse.ArgumentParser:
    """Add the ``regress`` subcommand to ``commands`` and return its parser."""
    parser = commands.add_parser("regress", help="compare fresh runs with committed baseline metrics")
    parser.add_argument("experiments", type=Path, nargs="*", metavar="EXP.yaml",
                        help="experiments to run (default: those the baselines record)")
    parser.add_argument("--baseline", type=Path, required=True, metavar="FILE|DIR",
                        help="a baseline JSON file, or a folder of <name>.json baselines")
    parser.add_argument("--update", action="store_true", help="rewrite the baselines with fresh values")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value in every run (repeatable)")
    parser.set_defaults(handler=_regress)
    return parser


def _regress(args: argparse.Namespace) -> int:
    from simulator import regress
    from simulator.config import load_experiment
    from simulator.runner import run_experiment

    pairs = _pairs(args.experiments, args.baseline)
    failed = 0
    for experiment_path, baseline_path in pairs:
        baseline = regress.load_baseline(baseline_path) if baseline_path.is_file() else None
        if baseline is None and not args.update:
            regress.load_baseline(baseline_path)  # raises: not found, create it with --update
        recorded = baseline.overrides if baseline else []
        experiment_path = experiment_path or baseline.experiment
        experiment = load_experiment(experiment_path, [*recorded, *args.overrides])
        summary = run_experiment(experiment).summary
        name = experiment.config.name
        if args.update:
            new = regress.updated(baseline, baseline_path, experiment_path, [*recorded, *args.overrides], summary)
            regress.write_baseline(new)
            print(f"{name}: baseline {baseline_path} written ({len(new.metrics)} metrics)")
            continue
        result = regress.compare(baseline, summary, name)
        if result.passed:
            print(f"{name}: ok, {result.checked} metrics within tolerance of {baseline_path}")
        else:
            failed += 1
            problems = [f"{len(result.differences)} of {result.checked} metrics differ"] if result.differences else []
            if result.new_metrics:
                problems.append(f"{len(result.new_metrics)} metrics are missing")
            print(f"{name}: REGRESSION, {' and '.join(problems)} from {baseline_path}")
            if result.differences:
                print(regress.diff_table(result))
            for metric in result.new_metrics:
                print(f"metric {metric} is not in the baseline; re-baseline with --update")
    if failed:
        print(f"servesim regress: {failed} of {len(pairs)} experiments regressed "
              "(re-baseline deliberate changes with --update)", file=sys.stderr)
    return 1 if failed else 0


def _pairs(experiments: list[Path], baseline: Path) -> list[tuple[Path | None, Path]]:
    """(experiment or None: the recorded one, baseline file) for every check."""
    from simulator.sweep_plan import ExperimentSource

    if baseline.is_dir():
        if not experiments:
            files = sorted(baseline.glob("*.json"))
            if not files:
                raise ServesimError(f"{baseline}: no baseline files (*.json) in this folder")
            return [(None, f) for f in files]
        return [(e, baseline / f"{ExperimentSource.load(e).name}.json") for e in experiments]
    if len(experiments) > 1:
        raise ServesimError(f"--baseline {baseline}: one file holds one experiment's baseline; "
                            "give a folder to check several")
    if not experiments and not baseline.is_file():
        raise ServesimError(f"{baseline}: baseline not found; give the experiment and --update to create it")
    return [(experiments[0] if experiments else None, baseline)]
