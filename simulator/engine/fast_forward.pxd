# Declarations for the compiled build of fast_forward.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class DecodeRun:
    cdef public object per_offset, prev_end_s, plan, requests, start_s, length, durations_s, ends_s
    cdef public object work, blocks_added, offset, kv_read_start, joined, first_end_s, joiners
    cdef public object released_blocks, gaps, finishes

cdef class RunLedger:
    cdef public object _work, _added, _used, _steps, _pending, stats, energy_j, total_blocks
