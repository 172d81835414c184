# Declarations for the compiled build of instance.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Instance:
    cdef public object _step_in_flight, _step_work, on_first_token, _kv_actions, queues, id, tag
    cdef public object _wake, usage, guards, departures, committing_step_s, kv_hooks, runs, process
    cdef public object env, setup, kv, host, cost_model, power, batch_policy, stats, gap_histogram
    cdef public object on_done, gpu_name, tp, block_size
