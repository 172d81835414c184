"""Errors servesim raises on purpose.

Every error a user can cause (bad YAML, unknown names, unreadable traces) is a
``ServesimError``: the CLI prints its one-line message and exits with code 2.
Anything else escaping the CLI is a bug in servesim, not in the user's input.
"""

from __future__ import annotations


class ServesimError(Exception):
    """Base class for errors caused by input; ``str(err)`` is one line for the user."""

    exit_code = 2


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
