# Declarations for the compiled build of usage.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class InstanceUsage:
    cdef public object stats, power, kv, _kv_accounted_s, _unpriced
