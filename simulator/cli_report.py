"""``servesim report``: (re)write the report of a run folder, a sweep folder, or compare runs.

One folder with ``summary.json`` gets the single-run report; one with
``sweep.json`` (a sweep or capacity search) gets the sweep report. Several run
folders are compared in ``-o DIR`` (default ``runs/comparison``), one point each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.errors import ServesimError


def register(commands) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``commands`` and return its parser."""
    parser = commands.add_parser("report", help="write report.md and report.html for run or sweep folders")
    parser.add_argument("folders", type=Path, nargs="+", metavar="DIR",
                        help="a run folder, a sweep folder, or several run folders to compare")
    parser.add_argument("-o", "--output", type=Path, help="where a comparison of several runs goes "
                        "(default runs/comparison)")
    parser.add_argument("--label", action="append", default=None,
                        help="a label per compared run folder, in order (default: folder names)")
    parser.set_defaults(handler=_report)
    return parser


def _report(args: argparse.Namespace) -> int:
    from simulator.report import write_report
    from simulator.report.sweep_report import write_comparison, write_sweep_report

    folders = args.folders
    if len(folders) == 1 and (folders[0] / "sweep.json").is_file():
        report = write_sweep_report(folders[0])
    elif len(folders) == 1:
        report = write_report(folders[0])
    else:
        if args.label is not None and len(args.label) != len(folders):
            raise ServesimError(f"--label given {len(args.label)} times for {len(folders)} folders")
        report = write_comparison(folders, args.output or Path("runs") / "comparison", args.label)
    print(f"report in {report} and {report.with_suffix('.html')}")
    return 0
