"""``servesim calibrate``: fit the cost model's efficiency curves to measured timings.

Reads the measurement folder (default ``../shared/data``, looked for beside
the current folder and beside the repository), fits every measured GPU (see
``simulator.perf.calibrate``) and writes ``<gpu>.yaml`` plus ``index.yaml``
to the output folder (default ``hardware_profiles/calibration/``), replacing
the calibration files there. The same data gives the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.errors import ServesimError
from simulator.hardware import CATALOG_ROOT
from simulator.perf.calibration import CALIBRATION_DIR


def register(commands) -> argparse.ArgumentParser:
    """Add the ``calibrate`` subcommand to ``commands`` and return its parser."""
    parser = commands.add_parser("calibrate", help="fit efficiency curves to measured timings")
    parser.add_argument("--data", type=Path, help="measurement folder (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=CALIBRATION_DIR,
                        help="where to write <gpu>.yaml and index.yaml (default: hardware_profiles/calibration)")
    parser.set_defaults(handler=_calibrate)
    return parser


def default_data_dir() -> Path:
    """``../shared/data`` beside the current folder, else beside the repository."""
    for base in (Path.cwd(), CATALOG_ROOT.parent):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    raise ServesimError("no measurement folder: ../shared/data not found beside the current folder or the "
                        "repository; pass --data DIR")


def _calibrate(args: argparse.Namespace) -> int:
    from simulator.perf.calibrate import calibrate
    from simulator.perf.calibration import calibration_index
    from simulator.perf.calibration_io import HEADER, write_calibration, write_index

    data = args.data or default_data_dir()
    if not data.is_dir():
        raise ServesimError(f"{data}: measurement folder not found")
    found = calibrate(data)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):  # only files this command wrote, so a re-run leaves nothing behind
        if stale.read_text(errors="replace").startswith(HEADER[:40]) or stale.name == "index.yaml":
            stale.unlink()
    for calibration in found.values():
        write_calibration(calibration, out)
    write_index(calibration_index(found), out)
    for line in summary_lines(found):
        print(line)
    print(f"wrote {len(found)} calibration files and index.yaml to {out}")
    return 0


def summary_lines(found: dict) -> list[str]:
    """One line per fitted part: what it was fitted to and how well."""
    lines = []
    for gpu, c in found.items():
        ops = c.report.get("operators")
        if ops:
            cv = ops.get("leave_one_model_out", {}).get("pooled")
            classes = ", ".join(f"{k} {v:.1%}" for k, v in ops["mape_fitted_rows"].items())
            lines.append(f"{gpu}: operators on {len(ops['sources'])} files ({ops['points_fitted']} points): {classes}; "
                         f"Vidur per-layer MAPE {_pct(ops['vidur_layer_mape'])}, "
                         f"leave-one-model-out {_pct(cv)}")
        for entry in c.report.get("links", {}).get("curves", []):
            lines.append(f"{gpu}: {entry['op']} on {entry['link']} x{entry['gpus']}: MAPE {entry['mape']:.1%} "
                         f"({entry['points']} points)")
        serving = c.report.get("serving")
        if serving:
            per_tp = ", ".join(f"TP{tp} {v['mape']:.1%} (knee {v['prefill_knee_tokens']:.0f})"
                               for tp, v in serving["by_tp"].items())
            lines.append(f"{gpu}: serving overhead, MAPE by TP: {per_tp}")
        power = c.report.get("power_cap")
        if power:
            lines.append(f"{gpu}: power-cap exponent {c.power_exponent:.3g}: MAPE {power['mape']:.1%} "
                         f"({power['points']} capped configurations)")
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
