# Declarations for the compiled build of run_driver.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class RunDriver:
    cdef public object current, wake, _members, held, instance, env, fast_forward, ledger
    cdef public object cut_steps, through_finishes, _holds

cdef class Held:
    cdef public object entries, run, steps, extra, last_end_s
