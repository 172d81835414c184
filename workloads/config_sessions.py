"""Sessions, closed-loop clients and ServeGen in the schema.

A session is a chain of LLM calls the engine releases one after another
(see ``simulator.engine.session``). Conversations and agent tasks arrive by an
arrival process and carry their context from call to call; closed-loop
clients are a fixed number of users whose calls are independent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from workloads.config_base import MAX_SECONDS, StrictModel, tagged_union
from workloads.config_dists import CountDist, DurationDist, FixedDuration, LengthDist
from workloads.config_generators import ArrivalConfig, LengthsConfig

MAX_CALLS_PER_CLIENT = 1_000_000
NO_WAIT = FixedDuration(dist="fixed", seconds=0.0)


class ServeGenConfig(StrictModel):
    """Per-client arrivals and lengths from an Alibaba ServeGen folder (``chunk-<id>-trace.csv``/``-dataset.json``).

    ``window_s`` is the span of the (24-hour) day to replay, in seconds from
    midnight; its start becomes time 0. ``clients`` picks client ids (default:
    all). ``rate_scale`` multiplies every client's rate.
    """

    path: str = Field(min_length=1)
    clients: list[int] | None = Field(default=None, min_length=1)
    window_s: tuple[float, float] = (0.0, 86_400.0)
    rate_scale: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _window(self) -> ServeGenConfig:
        if not 0 <= self.window_s[0] < self.window_s[1]:
            raise ValueError("window_s must be [start, end] with 0 <= start < end")
        return self


class ClosedLoopConfig(StrictModel):
    """``clients`` users, each sending a request, waiting for its answer and ``think_time``, and so on.

    Each client is a session of independent calls that re-submits a rejected
    call. Clients start spread evenly over ``[0, ramp_s)``. The number of
    calls is ``requests_per_client``, or ``num_requests`` shared among clients.
    """

    clients: int = Field(gt=0, le=1_000_000)
    lengths: LengthsConfig
    think_time: DurationDist = NO_WAIT
    # Each client's calls are drawn when it starts, so their number is bounded like other counts.
    requests_per_client: int | None = Field(default=None, gt=0, le=MAX_CALLS_PER_CLIENT)
    ramp_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)


class ConversationConfig(StrictModel):
    """Multi-turn chats: each turn appends a user message to the whole conversation so far.

    ``lengths.prompt`` is the user message of a turn, ``lengths.output`` the
    reply; ``system_prompt_tokens`` are added to the first turn only.
    """

    kind: Literal["conversation"]
    arrivals: ArrivalConfig
    turns: CountDist
    lengths: LengthsConfig
    think_time: DurationDist = NO_WAIT
    system_prompt_tokens: int = Field(default=0, ge=0, le=1_000_000)
    num_sessions: int | None = Field(default=None, gt=0)


class AgentConfig(StrictModel):
    """Agent tasks: chains of calls, each prompt being the context so far plus the last tool output.

    A built-in ``profile`` (``swe-agent``, ``browsing-agent``) gives every
    distribution; any of them given here replaces the profile's. Without a
    profile all five are needed.
    """

    kind: Literal["agent"]
    arrivals: ArrivalConfig
    profile: str | None = None
    calls_per_task: CountDist | None = None
    first_prompt_tokens: LengthDist | None = None
    step_prompt_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None
    tool_latency_s: DurationDist | None = None
    num_sessions: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> AgentConfig:
        from workloads.sessions.agent_profiles import AGENT_FIELDS, agent_profile  # avoids an import cycle

        if self.profile is not None:
            agent_profile(self.profile)  # raises ValueError naming the known profiles
            return self
        missing = [name for name in AGENT_FIELDS if getattr(self, name) is None]
        if missing:
            raise ValueError(f"without a 'profile', give {', '.join(missing)}")
        return self


SessionsConfig = tagged_union("kind", {"conversation": ConversationConfig, "agent": AgentConfig})
