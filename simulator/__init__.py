"""servesim: a discrete-event simulator of LLM serving clusters.

The public entry points are re-exported here; see ``simulator.runner`` for the
composition root that turns an experiment into results.
"""

__version__ = "0.1.0"

# Before any engine module is imported: a compiled module whose source changed since the
# build runs from its source (see simulator.accel).
from simulator.accel import use_fresh_modules as _use_fresh_modules

_use_fresh_modules()
