"""servesim: a discrete-event simulator of LLM serving clusters.

The public entry points are re-exported here; see ``simulator.runner`` for the
composition root that turns an experiment into results.
"""

__version__ = "0.1.0"
