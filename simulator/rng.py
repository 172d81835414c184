"""Named random streams spawned from the experiment seed.

Every stochastic component gets its own ``numpy.random.Generator``, spawned
from ``SeedSequence(seed)`` by a fixed name, so adding a component never
shifts another's draws and the same seed gives the same run anywhere.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str, *index: int) -> np.random.Generator:
    """The generator for component ``name`` (and optional indices, e.g. an instance id)."""
    key = (zlib.crc32(name.encode("utf-8")),) + tuple(index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
