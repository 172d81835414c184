# Declarations for the compiled build of scaling.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class InstancePool:
    cdef public object env, instances, states, _provisioned_since, _provisioned_s, scale_ups
    cdef public object scale_downs, changed
