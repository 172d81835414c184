# Declarations for the compiled build of links.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Flow:
    cdef public object ports, nbytes, remaining, rate, started_s, finished_s, done, cancelled

cdef class Network:
    cdef public object env, bandwidth, flows, _advanced_s, _generation, bytes_delivered
