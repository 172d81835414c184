# Declarations for the compiled build of run_driver.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.engine.instance cimport Instance
from simulator.engine.fast_forward cimport DecodeRun, RunLedger

cdef class Held  # declared below: RunDriver.held is one

cdef class RunDriver:
    cdef public object env, fast_forward, wake, cut_steps
    cdef public object through_finishes, _members, _holds
    cdef public Held held
    cdef public Instance instance
    cdef public DecodeRun current
    cdef public RunLedger ledger

cdef class Held:
    cdef public object steps, extra, last_end_s, entries
    cdef public DecodeRun run
