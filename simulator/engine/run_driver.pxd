# Declarations for the compiled build of run_driver.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class RunDriver:
    cdef public object instance, env, fast_forward, current, ledger, wake, cut_steps
    cdef public object through_finishes, _members, held, _holds

cdef class Held:
    cdef public object run, steps, extra, last_end_s, entries
