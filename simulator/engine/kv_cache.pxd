# Declarations for the compiled build of kv_cache.py (see simulator/accel.py): its classes become
# extension types whose attributes are Python objects, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks).

cdef class KVCache:
    cdef public object total_blocks, block_size, watermark_blocks, raw_free, refcount, cached
    cdef public object holdings, private_total, reserved, _hash_cache, pins, pin_refs
