# Declarations for the compiled build of gap_buffer.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

cdef class GapBuffer:
    cdef public object histogram
    cdef public list _values, _each_values, _each_counts, _each_sizes
