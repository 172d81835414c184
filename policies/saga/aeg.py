"""Agent Execution Graphs, learned online per agent type (SAGA, reconstructed).

An agent type's graph has one node per call kind ("task", "tool_result", ...)
and an END node. Every released call adds an edge from the previous call's
kind to its own, with the tool latency that preceded it and the tokens it
appended; every workflow that ends adds an edge to END and its number of
calls. From these the graph predicts, for a workflow that has just finished a
call:

* ``p_continue``: the probability that another call follows. The survival of
  the observed calls-per-task distribution at the workflow's call count,
  blended with the Markov edge probability out of its last kind (which also
  serves while few workflows have ended, when the survival is biased towards
  short tasks);
* the tool latency before that call: recent samples of the edge, as a
  quantile (for a time-to-live) or as the expected remaining wait given how
  long the workflow has already waited (for the retention score).

The paper learns richer graphs from the agents' traces (branching tool
choices); the workloads here have two call kinds, so the graph reduces to
these two predictions, which are what retention needs.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque


class AgentGraph:
    """The learned graph of one agent type.

    Args:
        window: recent samples kept per edge (tool latencies, appended tokens).
        prior_continue: edge probability assumed out of a kind never seen.
    """

    END = "<end>"

    def __init__(self, window: int = 512, prior_continue: float = 0.9) -> None:
        self.window, self.prior_continue = window, prior_continue
        self.edges: dict[str, Counter] = {}
        self.waits: dict[str, deque[float]] = {}
        self.appended: dict[str, deque[int]] = {}
        self.calls_ended: list[int] = []  # calls per ended workflow, sorted

    # --------------------------------------------------------------- learning
    def observe_call(self, previous_kind: str, kind: str, wait_s: float, new_tokens: int) -> None:
        """A call of ``kind`` was released ``wait_s`` after a call of ``previous_kind`` ended."""
        self.edges.setdefault(previous_kind, Counter())[kind] += 1
        self.waits.setdefault(previous_kind, deque(maxlen=self.window)).append(wait_s)
        self.appended.setdefault(previous_kind, deque(maxlen=self.window)).append(new_tokens)

    def observe_end(self, last_kind: str, calls: int) -> None:
        """A workflow ended after ``calls`` calls, the last of ``last_kind``."""
        self.edges.setdefault(last_kind, Counter())[self.END] += 1
        bisect.insort(self.calls_ended, calls)

    # ------------------------------------------------------------- prediction
    def p_edge_continue(self, kind: str) -> float:
        """Markov probability that a call follows one of ``kind`` (with one pseudo-count of the prior)."""
        counts = self.edges.get(kind)
        if not counts:
            return self.prior_continue
        total = sum(counts.values())
        return (total - counts[self.END] + self.prior_continue) / (total + 1)

    def p_continue(self, calls_done: int, kind: str) -> float:
        """Probability that a workflow with ``calls_done`` calls, the last of ``kind``, makes another."""
        markov = self.p_edge_continue(kind)
        ended = self.calls_ended
        at_least = len(ended) - bisect.bisect_left(ended, calls_done)
        if at_least == 0:
            return markov
        more = len(ended) - bisect.bisect_right(ended, calls_done)
        # Survival from few ended workflows is noisy; weigh it by its sample size.
        weight = at_least / (at_least + 8)
        return weight * (more / at_least) + (1 - weight) * markov

    def wait_quantile(self, kind: str, q: float, default_s: float) -> float:
        """The ``q`` quantile of recent tool latencies after a call of ``kind``."""
        samples = self.waits.get(kind)
        if not samples:
            return default_s
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def expected_remaining_wait_s(self, kind: str, waited_s: float, default_s: float) -> float:
        """Mean of (latency - waited) over recent latencies after ``kind`` longer than ``waited_s``.

        When none is that long the workflow is overdue: the largest sample is
        a lower bound, and the wait is taken as long as everything seen so far.
        """
        samples = self.waits.get(kind)
        if not samples:
            return max(default_s - waited_s, default_s / 2)
        longer = [s - waited_s for s in samples if s > waited_s]
        if not longer:
            return max(samples) + waited_s
        return sum(longer) / len(longer)

    def mean_appended(self, kind: str, default: float) -> float:
        samples = self.appended.get(kind)
        return sum(samples) / len(samples) if samples else default


class GraphBook:
    """One ``AgentGraph`` per agent type, created on first sight."""

    def __init__(self, window: int = 512, prior_continue: float = 0.9) -> None:
        self.window, self.prior_continue = window, prior_continue
        self.graphs: dict[str, AgentGraph] = {}

    def __getitem__(self, agent_type: str) -> AgentGraph:
        graph = self.graphs.get(agent_type)
        if graph is None:
            graph = self.graphs[agent_type] = AgentGraph(self.window, self.prior_continue)
        return graph
