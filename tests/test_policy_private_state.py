"""Policies read their private attributes through a property per attribute (installed by
``Policy``), with pydantic's semantics."""

import copy
import pickle

import pytest
from pydantic import BaseModel, PrivateAttr

from simulator.policy_api import Policy


class _Counting(Policy):
    limit: int = 4
    _count: int = PrivateAttr(3)


class _Stateful(_Counting):
    _hook: object = PrivateAttr(default=lambda self: self.limit * 10)  # a descriptor: pydantic binds it


def test_private_attributes_read_and_write_as_pydantic_would():
    policy = _Stateful()
    assert policy._count == 3
    policy._count = 7
    assert policy._count == 7
    assert policy._hook() == 40, "a function default is returned bound, as pydantic does"


def test_missing_attributes_still_raise_attribute_error():
    policy = _Stateful()
    with pytest.raises(AttributeError):
        policy._missing
    with pytest.raises(AttributeError):
        policy.missing
    assert not hasattr(policy, "_missing")


def test_private_state_survives_copies_and_pickling():
    policy = _Counting(limit=2)
    policy._count = 9
    for twin in (copy.copy(policy), copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert twin._count == 9 and twin.limit == 2


class _Rebound(_Counting):
    _count: object = PrivateAttr(default=lambda self: self.limit + 1)  # now a descriptor: bound


def test_private_attributes_are_found_without_the_failed_lookup(monkeypatch):
    """A read finds the attribute's property: pydantic's ``__getattr__`` (reached only after normal
    lookup raised inside) is not called, for the class's own attributes or inherited ones."""
    calls = []
    original = BaseModel.__getattr__

    def counting(self, name):
        calls.append(name)
        return original(self, name)

    monkeypatch.setattr(BaseModel, "__getattr__", counting)
    policy = _Stateful()
    policy._count = 5
    assert policy._count == 5
    assert calls == []


def test_a_subclass_redeclaring_a_private_attribute_with_a_descriptor_default_gets_it_bound():
    assert _Rebound(limit=6)._count() == 7
    assert _Counting()._count == 3, "the parent's reader is unchanged"
