# Declarations for the compiled build of request.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Request:
    cdef public object instance_id, first_scheduled_s, first_token_s, last_token_s, finish_s
    cdef public object reject_reason, predicted_output_tokens, id, spec, arrival_s, prompt_tokens
    cdef public object max_output_tokens, output_tokens, computed_tokens, generated_tokens, status
    cdef public object admitted_seq, max_token_gap_s, num_preemptions, prefix_hit_tokens
    cdef public object recomputed_tokens
