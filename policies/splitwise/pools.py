"""Machine pools of a Splitwise cluster: prompt, token, and the mixed pool between them.

Each instance has a home pool, its ``tag`` in the experiment (``prompt`` or
``token``; anything else is a permanently mixed machine). When the prompt
pool's queues grow too long, the cluster scheduler borrows a token machine
into the mixed pool to run prompts; when the token pool runs out of memory,
it borrows a prompt machine to run tokens. A borrowed machine goes back to
its home pool once it is idle (holds no request and expects no hand-off).
"""

from __future__ import annotations

from typing import Callable, Sequence

from simulator.policy_api import InstanceView

PROMPT, TOKEN = "prompt", "token"


class Pools:
    """Which instances are in the prompt, token and mixed pools right now.

    Args:
        instances: every instance of the cluster.
        expecting: how many hand-offs or assignments an instance still awaits
            (a machine expecting work is not idle).
    """

    def __init__(self, instances: Sequence[InstanceView], expecting: Callable[[int], int]) -> None:
        self.instances = instances
        self.expecting = expecting
        self.home = {inst.id: inst.tag for inst in instances}
        self.borrowed: list[int] = []  # in the mixed pool, in the order they were borrowed
        self.permanent_mixed = [inst.id for inst in instances if inst.tag not in (PROMPT, TOKEN)]

    def pool(self, name: str) -> list[InstanceView]:
        """The instances of the ``prompt`` or ``token`` pool now (borrowed ones excluded)."""
        return [inst for inst in self.instances if self.home[inst.id] == name and inst.id not in self.borrowed]

    @property
    def mixed(self) -> list[InstanceView]:
        return [self.instances[i] for i in (*self.permanent_mixed, *self.borrowed)]

    @property
    def disaggregated(self) -> bool:
        """True when both a prompt and a token pool exist (else the cluster is a mixed baseline)."""
        return any(t == PROMPT for t in self.home.values()) and any(t == TOKEN for t in self.home.values())

    def borrow(self, instance: InstanceView) -> InstanceView:
        """Move ``instance`` from its home pool into the mixed pool."""
        if instance.id not in self.borrowed:
            self.borrowed.append(instance.id)
        return instance

    def return_idle(self) -> None:
        """Send borrowed machines that hold no request and expect none back to their home pool."""
        self.borrowed = [i for i in self.borrowed
                         if self.instances[i].num_requests > 0 or self.expecting(i) > 0]
