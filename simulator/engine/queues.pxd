# Declarations for the compiled build of queues.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

cdef class InstanceQueues:
    cdef public object waiting, swapped, pending_tokens, _admissions
    cdef public list running
