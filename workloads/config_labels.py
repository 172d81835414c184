"""Labelling rules in the schema: tenants, SLO classes and priorities set by condition.

``labels`` is a list of rules; every rule whose ``when`` holds for an item
sets the fields in its ``set``, and later rules override earlier ones, so a
catch-all rule first and specific rules after reads naturally::

    labels:
      - set: {tenant: chat}
      - when: {prompt_tokens_gt: 4000}
        set: {slo_class: long, priority: 1}
      - when: {columns: {Model: [GPT-4]}, fraction: 0.5}
        set: {tenant: premium}

For a session, token conditions look at its first call.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from workloads.config_base import StrictModel
from workloads.config_trace import FilterValue

ItemKind = Literal["request", "workflow", "conversation", "client"]


class LabelWhen(StrictModel):
    """Conditions, all of which must hold (an empty ``when`` always holds).

    Token bounds are strict; ``columns`` matches trace columns (as a filter
    does) and never holds for generated items; ``fraction`` keeps a random
    share of the items that meet the other conditions.
    """

    prompt_tokens_gt: int | None = None
    prompt_tokens_lt: int | None = None
    output_tokens_gt: int | None = None
    output_tokens_lt: int | None = None
    source: str | None = None
    kind: ItemKind | None = None
    columns: dict[str, list[FilterValue]] | None = None
    fraction: float | None = Field(default=None, gt=0, le=1)


class LabelSet(StrictModel):
    """The labels a rule sets; at least one."""

    tenant: str | None = Field(default=None, min_length=1)
    priority: int | None = None
    slo_class: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _something(self) -> LabelSet:
        if self.tenant is None and self.priority is None and self.slo_class is None:
            raise ValueError("set at least one of tenant, priority, slo_class")
        return self


class LabelRule(StrictModel):
    """Set ``set`` on the items for which ``when`` holds."""

    when: LabelWhen = LabelWhen()
    set: LabelSet
