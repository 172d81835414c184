# Declarations for the compiled build of run_progress.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class GapMaxima:
    cdef public object count, _positions, _values

cdef class FinishOrder:
    cdef public object _heap, _joined
