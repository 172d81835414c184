"""The Splitwise reproduction's own pieces (experiments/papers/splitwise): budgets and SLO slowdowns.

Every cluster a budget allows spends it (one more token machine would not
fit), the machine figures are Splitwise's, and a request running alone on a
DGX-A100 has a slowdown of 1 - the reference the nine SLO percentiles are
measured against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parent.parent / "experiments" / "papers" / "splitwise"
sys.path.insert(0, str(STUDY))

from splitwise_designs import A100, BUDGETS, DESIGNS, H100, H100CAP, Cluster, budget, clusters  # noqa: E402
from splitwise_search import run_once  # noqa: E402


def test_machine_figures_are_splitwises() -> None:
    assert (A100.usd_per_hour, H100.usd_per_hour, H100CAP.usd_per_hour) == (17.6, 38.0, 38.0)
    assert (A100.power_kw, H100.power_kw) == (pytest.approx(3.2), pytest.approx(5.6))
    assert H100CAP.power_kw == pytest.approx(0.7 * H100.power_kw)


@pytest.mark.parametrize("kind", list(BUDGETS))
@pytest.mark.parametrize("design", list(DESIGNS))
def test_every_cluster_spends_its_budget(design: str, kind: str) -> None:
    limit = budget(kind, 10)
    spend = (lambda c: c.usd_per_hour) if BUDGETS[kind][0] == "cost" else (lambda c: c.power_kw)
    found = clusters(design, kind, 10)
    assert found
    for cluster in found:
        assert spend(cluster) <= limit + 1e-9
        bigger = Cluster(design, cluster.prompt + (cluster.token == 0), cluster.token + (cluster.token > 0))
        assert spend(bigger) > limit + 1e-9, f"{cluster.label} leaves room for another machine"


def test_hhcap_fits_more_token_machines_in_the_same_power() -> None:
    hh = {c.prompt: c.token for c in clusters("Splitwise-HH", "iso-power", 10)}
    cap = {c.prompt: c.token for c in clusters("Splitwise-HHcap", "iso-power", 10)}
    assert all(cap[p] >= hh[p] for p in hh) and any(cap[p] > hh[p] for p in hh)


def test_a_request_alone_on_a_dgx_a100_has_no_slowdown() -> None:
    report = run_once("conversation", Cluster("Baseline-A100", 1, 0), rate=0.002, requests=4)
    for q in (50, 90, 99):
        assert report[f"ttft_p{q}"] == pytest.approx(1.0, rel=1e-9)
        assert report[f"tbt_p{q}"] == pytest.approx(1.0, rel=0.02)
        assert report[f"e2e_p{q}"] == pytest.approx(1.0, rel=0.02)
    assert report["meets_slo"] == 1.0


def test_splitwise_hh_holds_the_slos_where_the_same_cost_baseline_does_not() -> None:
    """The headline's direction at one rate: 4 DGX-H100 split 2P+2T against the same 4 as a mixed pool."""
    rate = 12.0  # between the two clusters' max rates in results.csv (10.5 and 13.0 requests/s)
    split = run_once("conversation", Cluster("Splitwise-HH", 2, 2), rate, requests=1200)
    mixed = run_once("conversation", Cluster("Baseline-H100", 4, 0), rate, requests=1200)
    assert split["meets_slo"] == 1.0, split
    assert mixed["meets_slo"] == 0.0, mixed
    assert split["kv_transfer_gb"] > 0 and mixed["kv_transfer_gb"] == 0
