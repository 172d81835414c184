"""Applying labelling rules: tenants, priorities and SLO classes by condition.

Rules run in order and later ones override earlier ones (see
``config_labels``). On request batches the rules are vectorised: each rule
is a boolean mask and each label a column. Sessions are few, so they are
labelled one at a time. ``fraction`` draws from the labeller's own random
stream, so adding a rule does not change the requests themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from simulator.engine.session import SessionSpec
from workloads.batch import RequestBatch
from workloads.config_labels import LabelRule, LabelWhen
from workloads.transforms import matches

DEFAULTS = {"tenant": "default", "priority": 0, "slo_class": "default"}


class Labeller:
    """The label rules that apply to one source (its own, then the workload's)."""

    def __init__(self, rules: Sequence[LabelRule], source: str, rng: np.random.Generator) -> None:
        self.rules = list(rules)
        self.source = source
        self.rng = rng

    def columns(self) -> set[str]:
        """Trace columns the rules look at."""
        return {name for rule in self.rules for name in (rule.when.columns or {})}

    def label_batch(self, batch: RequestBatch) -> None:
        """Fill ``batch.labels`` in place for every rule that holds."""
        for field, default in DEFAULTS.items():
            if field in batch.labels:
                _fill_missing(batch.labels[field], default)
        for rule in self.rules:
            mask = self._batch_mask(rule.when, batch)
            if not mask.any():
                continue
            for field, value in rule.set.model_dump(exclude_none=True).items():
                column = batch.labels.get(field)
                if column is None:
                    column = batch.labels[field] = _filled(len(batch), DEFAULTS[field])
                column[mask] = value

    def label_session(self, session: SessionSpec) -> SessionSpec:
        """``session`` with the labels of every rule that holds for it."""
        changes: dict[str, object] = {}
        first = session.calls[0]
        for rule in self.rules:
            if self._session_holds(rule.when, session.kind, first.new_prompt_tokens, first.output_tokens):
                changes.update(rule.set.model_dump(exclude_none=True))
        return replace(session, **changes) if changes else session

    def _batch_mask(self, when: LabelWhen, batch: RequestBatch) -> np.ndarray:
        n = len(batch)
        mask = _token_mask(when, batch.prompt_tokens, batch.output_tokens)
        if not self._scalar_holds(when, "request"):
            mask &= False
        for name, values in (when.columns or {}).items():
            mask &= matches(batch.columns[name], values) if name in batch.columns else False
        if when.fraction is not None:
            mask &= self.rng.random(n) < when.fraction
        return mask

    def _session_holds(self, when: LabelWhen, kind: str, prompt: int, output: int) -> bool:
        holds = bool(_token_mask(when, np.array([prompt]), np.array([output]))[0])
        holds = holds and self._scalar_holds(when, kind) and not when.columns
        if holds and when.fraction is not None:
            holds = self.rng.random() < when.fraction
        return holds

    def _scalar_holds(self, when: LabelWhen, kind: str) -> bool:
        return (when.source is None or when.source == self.source) and (when.kind is None or when.kind == kind)


def _token_mask(when: LabelWhen, prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
    mask = np.ones(len(prompt), dtype=bool)
    for bound, values, above in ((when.prompt_tokens_gt, prompt, True), (when.prompt_tokens_lt, prompt, False),
                                 (when.output_tokens_gt, output, True), (when.output_tokens_lt, output, False)):
        if bound is not None:
            mask &= values > bound if above else values < bound
    return mask


def _filled(n: int, value: object) -> np.ndarray:
    if isinstance(value, int):
        return np.full(n, value, dtype=np.int64)
    column = np.empty(n, dtype=object)
    column[:] = value
    return column


def _fill_missing(column: np.ndarray, default: object) -> None:
    # Empty cells of a trace's label column take the default label.
    if column.dtype == object:
        column[np.equal(column, None)] = default
