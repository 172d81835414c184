# Declarations for the compiled build of roofline.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Roofline:
    cdef public object model, gpu, tp, pp, tp_link, pp_link, eff, peak_flops, compute_flops
    cdef public object hbm_bytes_per_s, _efficiencies, _layers, _dtype_bytes, _q_out, _kv_out
