"""Figures and the Markdown report of a run, built from its output folder only.

Nothing here imports the engine: a report is a function of ``summary.json`` and
``requests.csv``, so old runs can be re-reported and results shared without code.
"""

from simulator.report.markdown import write_report

__all__ = ["write_report"]
