# Declarations for the compiled build of instance.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Instance:
    cdef public object env, setup, kv, host, cost_model, power, batch_policy, stats, gap_histogram
    cdef public object on_done, queues, id, gpu_name, tp, block_size, tag, _wake, usage
    cdef public object _step_in_flight, _step_work, guards, departures, on_first_token
    cdef public object committing_step_s, kv_hooks, _kv_actions, runs, process
