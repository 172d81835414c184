"""One registry per policy kind: lookup by name, decorator registration, entry points.

Built-in and third-party policies are found the same way: through the
entry-point group of their kind (declared in a package's pyproject.toml),
loaded lazily: asked for a name, a registry loads that name's entry points
only (a run imports the policies it uses, not every plugin installed); asked
for all names, it loads them all. Importing a policy module also registers it
through the decorator. A name registered twice with different classes is an
error, never a silent override.

A configuration never makes servesim import code on its own: a name that
looks like a dotted path (``mypkg.module:Class``) is refused unless the user
opted in with ``--allow-import`` on the command line (``allow_imports(True)``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import pydantic

from simulator.errors import RegistryError
from simulator.yaml_loading import condense_validation_error

T = TypeVar("T")

_imports_allowed = False


def allow_imports(allowed: bool) -> None:
    """Let configurations name classes by ``module:Class`` path (the CLI's ``--allow-import``)."""
    global _imports_allowed
    _imports_allowed = bool(allowed)


def imports_allowed() -> bool:
    return _imports_allowed


def is_import_path(name: str) -> bool:
    """True for a name that would be imported (``pkg.module:Class`` or ``pkg.module.Class``)."""
    return "." in name or ":" in name


class Registry(Generic[T]):
    """Named classes of one policy kind.

    Args:
        kind: human name of the kind, used in messages (e.g. "router").
        group: the entry-point group that lists this kind's classes.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._classes: dict[str, type[T]] = {}
        self._entry_points_loaded = False  # all of them
        self._names_loaded: set[str] = set()  # those of these names

    def register(self, name: str):
        """Class decorator: ``@ROUTERS.register("jsq")``."""
        def decorate(cls: type[T]) -> type[T]:
            self._add(name, cls)
            return cls
        return decorate

    def _add(self, name: str, cls: type[T]) -> None:
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise RegistryError(f"{self.kind} '{name}' is registered twice "
                                f"({existing.__module__}.{existing.__qualname__} and "
                                f"{cls.__module__}.{cls.__qualname__})")
        self._classes[name] = cls

    def _load_entry_points(self, name: str | None = None) -> None:
        """Load the group's entry points (``name``: those of that name only), each set once."""
        if self._entry_points_loaded or name in self._names_loaded:
            return
        if name is None:
            self._entry_points_loaded = True
            selected = entry_points(group=self.group)
        else:
            self._names_loaded.add(name)
            selected = entry_points(group=self.group, name=name)
        for ep in sorted(selected, key=lambda e: e.name):
            self._add(ep.name, ep.load())

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        if is_import_path(name):
            return self._import(name)
        self._load_entry_points(name)
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def _import(self, path: str) -> type[T]:
        if not _imports_allowed:
            raise RegistryError(f"{self.kind} '{path}' is an import path, not a registered name; importing "
                                f"code named in a config needs --allow-import on the command line")
        module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
        try:
            found: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except Exception as err:  # noqa: BLE001 - the user's module may fail in any way while importing
            raise RegistryError(f"cannot import {self.kind} '{path}' ({type(err).__name__}: {err})") from None
        if not isinstance(found, type):
            raise RegistryError(f"{self.kind} '{path}' is not a class")
        return found

    def create(self, params: dict[str, Any], where: str = "") -> T:
        """Build a policy from its YAML mapping ``{name: ..., <params>}``."""
        params = dict(params)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise RegistryError(f"{where or self.kind}: a 'name' of a registered {self.kind} is required")
        try:
            cls = self.get(name)
        except RegistryError as err:
            raise RegistryError(f"{where}: {err}" if where else str(err)) from None
        try:
            return cls(**params)
        except pydantic.ValidationError as err:
            raise RegistryError(condense_validation_error(err, where)) from None
        except (TypeError, ValueError) as err:
            raise RegistryError(f"{where}: {err}") from None


ROUTERS: Registry[Any] = Registry("router", "servesim.routers")
BATCH_POLICIES: Registry[Any] = Registry("batching policy", "servesim.batching")
ADMISSION_POLICIES: Registry[Any] = Registry("admission policy", "servesim.admission")
EVICTION_POLICIES: Registry[Any] = Registry("eviction policy", "servesim.eviction")
CLUSTER_CONTROLLERS: Registry[Any] = Registry("cluster controller", "servesim.controllers")
WORKFLOW_POLICIES: Registry[Any] = Registry("workflow policy", "servesim.workflow")

ALL_REGISTRIES = {
    "routers": ROUTERS, "batching": BATCH_POLICIES, "admission": ADMISSION_POLICIES,
    "eviction": EVICTION_POLICIES, "controllers": CLUSTER_CONTROLLERS, "workflow": WORKFLOW_POLICIES}
