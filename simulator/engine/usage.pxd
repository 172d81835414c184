# Declarations for the compiled build of usage.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.engine.kv_cache cimport KVCache

cdef class InstanceUsage:
    cdef public object stats, power, _kv_accounted_s
    cdef public list _unpriced
    cdef public KVCache kv
