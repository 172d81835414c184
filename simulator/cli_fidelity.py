"""``servesim fidelity``: predicted against measured for every measurement in a folder.

Prints the MAPE per source, GPU and operator (and Vidur's per-layer MAPE),
writes a predicted-against-measured scatter plot, and with ``--json FILE``
every record and the summary (see ``simulator.perf.fidelity``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.errors import ServesimError


def register(commands) -> argparse.ArgumentParser:
    """Add the ``fidelity`` subcommand to ``commands`` and return its parser."""
    parser = commands.add_parser("fidelity", help="compare predictions with measured timings")
    parser.add_argument("--measurements", type=Path, required=True, metavar="DIR",
                        help="folder of measurement files (Vidur, LLMServingSim, Splitwise, DistServe formats)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every record and the summary as JSON")
    parser.add_argument("--plot", type=Path, default=Path("fidelity.png"), metavar="FILE",
                        help="scatter plot of predicted against measured (default fidelity.png)")
    parser.add_argument("--no-plot", action="store_true", help="skip the scatter plot")
    parser.add_argument("--calibration", default="auto",
                        help="auto (the committed fits), none (uncalibrated defaults), or a calibration folder/file")
    parser.set_defaults(handler=_fidelity)
    return parser


def _fidelity(args: argparse.Namespace) -> int:
    from simulator.perf.calibration import select_calibrations
    from simulator.perf.fidelity import fidelity
    from simulator.perf.measurements import read_measurements

    data = read_measurements(args.measurements)
    if not len(data):
        raise ServesimError(f"{args.measurements}: no measurement file recognised")
    for note in data.skipped:
        print(f"skipped {note}")
    result = fidelity(data, select_calibrations(args.calibration))
    print(format_summary(result.summary))
    print(format_iterations(result.records))
    excluded = result.records["excluded"].value_counts()
    for reason, count in excluded.items():
        print(f"excluded from the MAPE: {count} rows ({reason})")
    if args.json:
        result.to_json(args.json)
        print(f"records and summary in {args.json}")
    if not args.no_plot:
        from simulator.perf.fidelity_plot import scatter

        print(f"scatter plot in {scatter(result.records, args.plot)}")
    return 0


def format_summary(summary) -> str:
    """A fixed-width table: source, GPU, operator, rows, median measured and predicted ms, MAPE."""
    header = f"{'source':<20} {'gpu':<15} {'op':<26} {'rows':>7} {'measured ms':>12} {'predicted ms':>13} {'MAPE':>7}"
    lines = [header, "-" * len(header)]
    for row in summary.itertuples():
        lines.append(f"{row.source:<20} {row.gpu:<15} {row.op:<26} {row.rows:>7} {row.measured_ms:>12.4g} "
                     f"{row.predicted_ms:>13.4g} {row.mape:>7.1%}")
    return "\n".join(lines)


def format_iterations(records) -> str:
    """Whole-iteration MAPE by source, GPU, model, TP and phase (the Splitwise acceptance view)."""
    from simulator.perf.fidelity import breakdown

    sources = tuple(s for s in records["source"].unique() if s == "splitwise" or s.startswith("distserve"))
    if not sources:
        return ""
    table = breakdown(records, sources, ["source", "gpu", "model", "tp", "op"])
    lines = ["", "whole iterations by model and TP:",
             f"{'source':<20} {'gpu':<15} {'model':<14} {'tp':>3} {'op':<7} {'rows':>5} {'MAPE':>7}"]
    for row in table.itertuples():
        lines.append(f"{row.source:<20} {row.gpu:<15} {row.model:<14} {int(row.tp):>3} {row.op:<7} {row.rows:>5} "
                     f"{row.mape:>7.1%}")
    return "\n".join(lines)
