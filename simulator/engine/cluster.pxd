# Declarations for the compiled build of cluster.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

cdef class Cluster:
    cdef public object env, router, recorder, max_context_tokens, pool, arrived
    cdef public object arrivals_done, done, _capacity_bounds, sessions
    cdef public list instances
    cdef public dict active, _waiters
