# Declarations for the compiled build of roofline.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class Roofline:
    cdef public object _efficiencies, peak_flops, compute_flops, hbm_bytes_per_s, model, gpu, tp
    cdef public object pp, tp_link, pp_link, eff
