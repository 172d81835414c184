"""Start-up stays lean: what ``servesim run`` imports before the first event leaves scipy out.

scipy was a fifth of start-up (the 1 s target of ``experiments/benchmarks/startup.py``); the
modules that need it (Weibull arrivals, fitting, sweep statistics) import it where they use it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_starting_a_run_does_not_import_scipy():
    probe = ("import sys, simulator.runner, simulator.cli\n"
             "from simulator.hardware import DEFAULT_CATALOG\n"
             "from simulator.perf.calibration import load_calibrations\n"
             "load_calibrations()\n"
             "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
