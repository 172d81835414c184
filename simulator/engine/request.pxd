# Declarations for the compiled build of request.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Request:
    cdef public object id, spec, arrival_s, prompt_tokens, output_tokens, max_output_tokens
    cdef public object computed_tokens, generated_tokens, status, instance_id, admitted_seq
    cdef public object first_scheduled_s, first_token_s, last_token_s, finish_s, max_token_gap_s
    cdef public object num_preemptions, prefix_hit_tokens, recomputed_tokens, reject_reason
    cdef public object predicted_output_tokens
