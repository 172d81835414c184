"""Errors servesim raises on purpose.

Every error a user can cause (bad YAML, unknown names, unreadable traces) is a
``ServesimError``: the CLI prints its one-line message and exits with code 2.
Anything else escaping the CLI is a bug in servesim, not in the user's input.
"""

from __future__ import annotations


# Characters that start a new line somewhere (str.splitlines): shown escaped, so that a
# message quoting the user's input (an override, a cell of a trace) stays on one line.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class ServesimError(Exception):
    """Base class for errors caused by input; ``str(err)`` is one line for the user."""

    exit_code = 2

    def __str__(self) -> str:
        return super().__str__().translate(_LINE_BREAKS)


class ConfigError(ServesimError):
    """An experiment file or override is invalid (names the file and the dotted field)."""


class ProfileError(ServesimError):
    """A hardware or model profile is missing or invalid (names the file and the key)."""


class TraceError(ServesimError):
    """A workload trace cannot be read (names the file and the line or column)."""


class RegistryError(ServesimError):
    """A policy or reader name is unknown or registered twice."""


class SimulationError(ServesimError):
    """The simulation reached a state it cannot continue from (names instance and request)."""


def located(path: object, where: str, message: str) -> str:
    """Format the house style for error locations: ``file: where: message``."""
    parts = [str(p) for p in (path, where) if p not in (None, "")]
    return ": ".join(parts + [message])
