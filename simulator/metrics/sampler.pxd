# Declarations for the compiled build of sampler.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class TimeSeriesSampler:
    cdef public object env, instances, interval_s, max_samples, columns, process
