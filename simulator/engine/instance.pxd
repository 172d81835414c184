# Declarations for the compiled build of instance.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

from simulator.engine.queues cimport InstanceQueues
from simulator.engine.kv_cache cimport KVCache
from simulator.engine.usage cimport InstanceUsage
from simulator.engine.run_driver cimport RunDriver
from simulator.engine.guards cimport Guards
from simulator.engine.departures cimport Departures

cdef class Instance:
    cdef public object env, setup, host, cost_model, power, batch_policy, stats, gap_histogram
    cdef public object on_done, id, gpu_name, tp, block_size, tag, _wake
    cdef public object _step_in_flight, _step_work, on_first_token
    cdef public object committing_step_s, kv_hooks, _kv_actions, process
    cdef public InstanceQueues queues
    cdef public KVCache kv
    cdef public InstanceUsage usage
    cdef public RunDriver runs
    cdef public Guards guards
    cdef public Departures departures
