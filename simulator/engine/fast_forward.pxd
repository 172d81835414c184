# Declarations for the compiled build of fast_forward.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.engine.run_progress cimport GapMaxima, FinishOrder

cdef class DecodeRun:
    cdef public object plan, start_s, length, work
    cdef public object offset, kv_read_start, first_end_s, prev_end_s
    cdef public list requests, durations_s, ends_s, blocks_added, per_offset
    cdef public dict joiners
    cdef public object joined, released_blocks
    cdef public GapMaxima gaps
    cdef public FinishOrder finishes

cdef class RunLedger:
    cdef public object stats, energy_j, total_blocks, _pending
    cdef public list _work, _added, _used, _steps
