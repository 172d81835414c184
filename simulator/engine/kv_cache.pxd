# Declarations for the compiled build of kv_cache.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class KVCache:
    cdef public object refcount, cached, holdings, _hash_cache, pins, pin_refs, total_blocks
    cdef public object block_size, watermark_blocks, raw_free, private_total, reserved
