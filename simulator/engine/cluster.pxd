# Declarations for the compiled build of cluster.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Cluster:
    cdef public object env, router, recorder, max_context_tokens, instances, pool, active, arrived
    cdef public object arrivals_done, done, _waiters, _capacity_bounds, sessions
