# Declarations for the compiled build of handoff.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class KVHandoffs:
    cdef public object env, instances, network, ports, kv_bytes_per_token, latency_s, num_layers
    cdef public object stats, _unreserved_blocks, in_flight
