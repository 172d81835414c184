"""Least-squares fit of efficiency curves to measured times.

A measured point ``i`` is modelled as the roofline does it::

    t_i = max(n1_i / (r1_i * eta_a(s1_i)), n2_i / (r2_i * eta_b(s2_i))) + offset

where each term has a numerator (FLOPs or bytes), a peak rate, and the size
at which its efficiency curve is read (either term may be absent). Each
curve is piecewise linear over fixed knots (``Curve``); the fit chooses the
log-efficiency at every knot and the shared offset (kernel launch or link
latency) by minimising the squared log error of all points (so relative
errors count alike for 2 us and 20 ms), with a soft-L1 loss against
outliers, a second-difference penalty that keeps each curve smooth and
defined where it has no data and, optionally, a first-difference penalty
(``flatness``) that pushes fixed costs into the offset. Knots sit at powers
of two spanning the data. The Jacobian is analytic and sparse, which keeps a
fit of thousands of points to about a second.

The fit is deterministic: same inputs, same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import least_squares

from simulator.perf.efficiency import Curve

MIN_EFFICIENCY = 1e-4
SMOOTHNESS = 0.5      # weight of each second difference of log-efficiency
SOFT_L1_SCALE = 0.1   # log errors beyond about 10% count linearly, not quadratically
MAX_OFFSET_S = 1e-3
TOLERANCE = 1e-6      # relative change in cost or parameters at which the solver stops


@dataclass
class Term:
    """One roofline term for a set of points: ``numerator / (rate x eta_curve(size))``."""

    curve: str
    numerator: np.ndarray
    rate: np.ndarray
    size: np.ndarray


@dataclass
class FitProblem:
    """Points, the terms that time them, the knots of every curve and the measured seconds."""

    measured_s: np.ndarray
    weight: np.ndarray
    terms: list[tuple[Term, np.ndarray]] = field(default_factory=list)  # (term, point indices)
    knots: dict[str, np.ndarray] = field(default_factory=dict)
    offset_s: float | None = None  # fixed offset; None fits one
    flatness: float = 0.0  # weight of first differences: > 0 makes fixed costs go to the offset, not the curve

    def add(self, term: Term, points: np.ndarray) -> None:
        if term.curve not in self.knots:
            self.knots[term.curve] = log2_knots(term.size)
        else:
            self.knots[term.curve] = log2_knots(np.concatenate([self.knots[term.curve], term.size]))
        self.terms.append((term, points))


@dataclass
class FitResult:
    """Fitted curves, the offset, and the per-point predictions."""

    curves: dict[str, Curve]
    offset_s: float
    predicted_s: np.ndarray


def log2_knots(sizes: np.ndarray) -> np.ndarray:
    """Knots at the powers of two that span ``sizes`` (positive entries)."""
    positive = sizes[sizes > 0]
    low = int(np.floor(np.log2(positive.min())))
    high = int(np.ceil(np.log2(positive.max())))
    return np.exp2(np.arange(low, max(high, low + 1) + 1)).astype(float)


def fit(problem: FitProblem, start: FitResult | None = None) -> FitResult:
    """Solve ``problem``, from ``start``'s curves (e.g. a fit on more data) or efficiency 0.5 and a 3 us offset."""
    names = sorted(problem.knots)
    starts = np.cumsum([0] + [len(problem.knots[n]) for n in names])
    layout = {n: (int(starts[i]), problem.knots[n]) for i, n in enumerate(names)}
    interp = [(term, points, *_weights(layout[term.curve], term.size)) for term, points in problem.terms]
    n_eta = int(starts[-1])
    fit_offset = problem.offset_s is None
    x0 = np.concatenate([_start(names, layout, start), [start.offset_s if start else 3e-6] if fit_offset else []])
    lower = np.concatenate([np.full(n_eta, np.log(MIN_EFFICIENCY)), [0.0] if fit_offset else []])
    upper = np.concatenate([np.zeros(n_eta), [MAX_OFFSET_S] if fit_offset else []])
    penalty = _penalty_matrix(names, layout, n_eta + fit_offset, problem.flatness)
    sqrt_w = np.sqrt(problem.weight)
    log_measured = np.log(problem.measured_s)

    def offset(x: np.ndarray) -> float:
        return x[-1] if fit_offset else problem.offset_s

    def residuals(x: np.ndarray) -> np.ndarray:
        t, _, _ = _times(x, interp, len(log_measured), offset(x))
        return np.concatenate([sqrt_w * (np.log(t) - log_measured), penalty @ x])

    def jacobian(x: np.ndarray) -> sparse.csr_matrix:
        t, winner, parts = _times(x, interp, len(log_measured), offset(x))
        rows, cols, vals = [], [], []
        eta_all = np.exp(x[:n_eta])
        for k, (term, points, j0, j1, w1) in enumerate(interp):
            mine = winner[points] == k
            p = points[mine]
            term_time, eta = parts[k][0][mine], parts[k][1][mine]
            scale = -sqrt_w[p] * term_time / (eta * t[p])
            for index, weight in ((j0[mine], 1 - w1[mine]), (j1[mine], w1[mine])):
                rows.append(p)
                cols.append(index)
                vals.append(scale * weight * eta_all[index])
        if fit_offset:
            rows.append(np.arange(len(t)))
            cols.append(np.full(len(t), n_eta))
            vals.append(sqrt_w / t)
        data = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(len(t), len(x)))
        return sparse.vstack([data, penalty]).tocsr()

    solution = least_squares(residuals, x0, jac=jacobian, bounds=(lower, upper), method="trf",
                             loss="soft_l1", f_scale=SOFT_L1_SCALE, tr_solver="lsmr", x_scale="jac",
                             max_nfev=200, ftol=TOLERANCE, xtol=TOLERANCE)
    x = solution.x
    curves = {n: Curve(tuple(layout[n][1]), tuple(np.exp(x[layout[n][0]:layout[n][0] + len(layout[n][1])])))
              for n in names}
    predicted, _, _ = _times(x, interp, len(log_measured), offset(x))
    return FitResult(curves, float(offset(x)), predicted)


def _start(names: list[str], layout: dict, start: FitResult | None) -> np.ndarray:
    values = []
    for name in names:
        knots = layout[name][1]
        if start is not None and name in start.curves:
            values.append(np.log(np.clip(start.curves[name](knots), MIN_EFFICIENCY, 1.0)))
        else:
            values.append(np.full(len(knots), np.log(0.5)))
    return np.concatenate(values)


def _weights(layout: tuple[int, np.ndarray], size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot indices and the interpolation weight of the upper knot, as ``Curve`` interpolates."""
    start, knots = layout
    clipped = np.clip(size, knots[0], knots[-1])
    j = np.clip(np.searchsorted(knots, clipped, side="right") - 1, 0, len(knots) - 2) if len(knots) > 1 else \
        np.zeros(len(size), dtype=int)
    if len(knots) == 1:
        return start + j, start + j, np.zeros(len(size))
    w1 = (clipped - knots[j]) / (knots[j + 1] - knots[j])
    return start + j, start + j + 1, w1


def _times(x: np.ndarray, interp: list, n: int, offset: float):
    """Predicted times, which term is the larger per point, and each term's (time, eta)."""
    eta_all = np.exp(x)
    best = np.zeros(n)
    winner = np.full(n, -1)
    parts = []
    for k, (term, points, j0, j1, w1) in enumerate(interp):
        eta = eta_all[j0] * (1 - w1) + eta_all[j1] * w1
        time = term.numerator / (term.rate * eta)
        parts.append((time, eta))
        larger = time > best[points]
        best[points[larger]] = time[larger]
        winner[points[larger]] = k
    return best + offset, winner, parts


def _penalty_matrix(names: list[str], layout: dict, width: int, flatness: float) -> sparse.csr_matrix:
    """Rows penalising each curve's second differences (smoothness) and, if asked, first differences."""
    rows, cols, vals = [], [], []
    r = 0
    for name in names:
        start, knots = layout[name]
        for i in range(1, len(knots) - 1):
            rows += [r, r, r]
            cols += [start + i - 1, start + i, start + i + 1]
            vals += [SMOOTHNESS, -2 * SMOOTHNESS, SMOOTHNESS]
            r += 1
        for i in range(len(knots) - 1) if flatness > 0 else ():
            rows += [r, r]
            cols += [start + i, start + i + 1]
            vals += [-flatness, flatness]
            r += 1
    return sparse.csr_matrix((vals, (rows, cols)), shape=(r, width))
