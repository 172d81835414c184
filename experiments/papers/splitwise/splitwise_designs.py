"""Splitwise's machine types, cluster designs and provisioning budgets.

Machine types are one DGX node serving one TP8 instance: DGX-A100, DGX-H100
and the power-capped DGX-H100 (each GPU capped at 70% of its TDP, Splitwise's
token-machine setting). Cost per machine is the node profile's
``usd_per_hour`` (Splitwise's Table II: $17.6/h and $38/h); power per machine
is GPUs x TDP x cap (400 W and 700 W per GPU, as in the paper), so a capped
H100 machine draws 0.7 of an H100 machine and costs the same.

A design names the machine type of its prompt and token pools; the Baselines
have one mixed pool. Under a budget (iso-cost or iso-power, set as the cost
or power of ``reference`` DGX-H100 machines - the paper's is 40 - or
low-cost, 80% of the iso-cost budget) each prompt-machine count takes the
most token machines that still fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.hardware import DEFAULT_CATALOG

CAP = 0.7


@dataclass(frozen=True)
class Machine:
    """One machine type: its node, optional power cap, cost and provisioned power."""

    name: str
    node: str
    cap: float | None = None

    @property
    def usd_per_hour(self) -> float:
        return DEFAULT_CATALOG.get("node", self.node).usd_per_hour

    @property
    def power_kw(self) -> float:
        node = DEFAULT_CATALOG.get("node", self.node)
        gpu = DEFAULT_CATALOG.get("gpu", node.gpu)
        return node.gpus_per_node * gpu.tdp_w * (self.cap or 1.0) / 1000

    def group(self, count: int, tag: str) -> dict:
        group = {"count": count, "node": self.node, "tp": 8, "tag": tag}
        if self.cap is not None:
            group["power_cap_fraction"] = self.cap
        return group


A100, H100, H100CAP = Machine("A100", "dgx-a100"), Machine("H100", "dgx-h100"), Machine("H100cap", "dgx-h100", CAP)

# design -> (prompt machine, token machine); a Baseline has one mixed pool.
DESIGNS = {
    "Baseline-A100": (A100, None), "Baseline-H100": (H100, None),
    "Splitwise-AA": (A100, A100), "Splitwise-HH": (H100, H100),
    "Splitwise-HA": (H100, A100), "Splitwise-HHcap": (H100, H100CAP),
}


@dataclass(frozen=True)
class Cluster:
    """One provisioned cluster: a design with its machine counts."""

    design: str
    prompt: int
    token: int  # 0 for a Baseline

    @property
    def machines(self) -> int:
        return self.prompt + self.token

    def _types(self) -> tuple[Machine, Machine | None]:
        return DESIGNS[self.design]

    @property
    def usd_per_hour(self) -> float:
        first, second = self._types()
        return self.prompt * first.usd_per_hour + (self.token * second.usd_per_hour if second else 0.0)

    @property
    def power_kw(self) -> float:
        first, second = self._types()
        return self.prompt * first.power_kw + (self.token * second.power_kw if second else 0.0)

    def instances(self) -> list[dict]:
        first, second = self._types()
        if second is None:
            return [first.group(self.prompt, "mixed")]
        return [first.group(self.prompt, "prompt"), second.group(self.token, "token")]

    @property
    def label(self) -> str:
        return f"{self.prompt}" if self.token == 0 else f"{self.prompt}P+{self.token}T"


# budget kind -> (what it limits, fraction of the reference's): "low-cost" is 80% of the
# iso-cost budget, for the paper's "more throughput at 20% lower cost".
BUDGETS = {"iso-cost": ("cost", 1.0), "iso-power": ("power", 1.0), "low-cost": ("cost", 0.8)}


def budget(kind: str, reference: int) -> float:
    """The cost ($/h) or power (kW) of ``reference`` DGX-H100 machines (times the kind's fraction)."""
    limits, fraction = BUDGETS[kind]
    return fraction * reference * (H100.usd_per_hour if limits == "cost" else H100.power_kw)


def clusters(design: str, kind: str, reference: int) -> list[Cluster]:
    """Every cluster of ``design`` that spends the budget: each prompt count with the most token machines."""
    limit = budget(kind, reference) * (1 + 1e-9)
    first, second = DESIGNS[design]
    spend = (lambda m: m.usd_per_hour) if BUDGETS[kind][0] == "cost" else (lambda m: m.power_kw)
    if second is None:
        return [Cluster(design, int(limit // spend(first)), 0)]
    found = []
    prompt = 1
    while prompt * spend(first) + spend(second) <= limit:
        found.append(Cluster(design, prompt, int((limit - prompt * spend(first)) // spend(second))))
        prompt += 1
    return found
