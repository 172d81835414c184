# Declarations for the compiled build of links.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Flow:
    cdef public object finished_s, remaining, rate, started_s, done, cancelled, ports, nbytes

cdef class Network:
    cdef public object bandwidth, flows, env, _advanced_s, _generation, bytes_delivered
