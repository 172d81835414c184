# Declarations for the compiled build of queues.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class InstanceQueues:
    cdef public object waiting, running, swapped, pending_tokens, _admissions
