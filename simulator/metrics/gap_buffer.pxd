# Declarations for the compiled build of gap_buffer.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class GapBuffer:
    cdef public object histogram, _values, _each_values, _each_counts, _each_sizes
