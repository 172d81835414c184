"""The host side of an instance: DRAM that holds swapped-out KV, and the PCIe link to it."""

from __future__ import annotations

from simulator.hardware import LinkProfile


class HostKVTier:
    """Host DRAM set aside for swapped KV, and the link swaps cross.

    Args:
        capacity_bytes: DRAM available for this instance's swapped KV.
        link: the GPU-host link (PCIe); swaps take ``bytes / bandwidth + latency``.
    """

    def __init__(self, capacity_bytes: float, link: LinkProfile) -> None:
        self.capacity_bytes = capacity_bytes
        self.link = link
        self.used_bytes = 0.0

    def can_hold(self, nbytes: float) -> bool:
        return self.used_bytes + nbytes <= self.capacity_bytes

    def store(self, nbytes: float) -> None:
        if not self.can_hold(nbytes):
            raise ValueError("host KV tier is full")
        self.used_bytes += nbytes

    def release(self, nbytes: float) -> None:
        self.used_bytes = max(0.0, self.used_bytes - nbytes)

    def transfer_time_s(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        return self.link.latency_s + nbytes / self.link.bytes_per_s
