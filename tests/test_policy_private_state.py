"""Policies read their private attributes through ``Policy.__getattr__``'s fast path, with pydantic's semantics."""

import copy
import pickle

import pytest
from pydantic import PrivateAttr

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
