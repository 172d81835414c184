# Declarations for the compiled build of step.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class StepBuilder:
    cdef public object kv, queues, host, limits, kv_bytes_per_token, held, tokens_left, seqs_left
    cdef public object _entries, _held_entries, _in_batch, _preempted, _swapped_out, _swapped_in
    cdef public object _swap_bytes, _rejected, _tokens, _sampled, _kv_read, _pairs, _decodes, _held
