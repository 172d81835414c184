# Declarations for the compiled build of kv_cache.py (see simulator/accel.py): its classes become
# extension types whose attributes are kept in the instance, read and written without a dictionary.
# Every attribute the class sets must be declared here (tests/test_accel.py checks). Links to other
# engine objects and plain lists, dicts and sets carry their type: compiled code reads through them
# without a lookup, and assigning another type to them raises TypeError.

cdef class KVCache:
    cdef public object total_blocks, block_size, watermark_blocks, raw_free, cached
    cdef public object private_total, reserved
    cdef public dict refcount, holdings, _hash_cache, pins, pin_refs
