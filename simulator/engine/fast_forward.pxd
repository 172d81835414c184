# Declarations for the compiled build of fast_forward.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class DecodeRun:
    cdef public object plan, requests, start_s, length, durations_s, ends_s, work, blocks_added
    cdef public object offset, per_offset, kv_read_start, first_end_s, prev_end_s, gaps, joiners
    cdef public object joined, finishes, released_blocks

cdef class RunLedger:
    cdef public object stats, energy_j, total_blocks, _work, _added, _used, _steps, _pending
