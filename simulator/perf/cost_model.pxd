# Declarations for the compiled build of cost_model.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class InstanceCostModel:
    cdef public object roofline, host, _dense, _dense_blocks, _heads, _decode_blocks, _last_work
    cdef public object _steps
