# Declarations for the compiled build of step.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.engine.queues cimport InstanceQueues
from simulator.engine.kv_cache cimport KVCache

cdef class StepBuilder:
    cdef public object host, limits, kv_bytes_per_token, held, tokens_left, seqs_left
    cdef public object _held_entries
    cdef public list _entries, _preempted, _swapped_out, _swapped_in, _rejected
    cdef public set _in_batch
    cdef public object _swap_bytes, _tokens, _sampled, _kv_read, _pairs, _decodes, _held
    cdef public InstanceQueues queues
    cdef public KVCache kv
