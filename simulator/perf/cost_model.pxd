# Declarations for the compiled build of cost_model.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.perf.roofline cimport Roofline

cdef class InstanceCostModel:
    cdef public object host, _dense, _dense_blocks, _heads, _decode_blocks, _last_work
    cdef public object _steps
    cdef public Roofline roofline
