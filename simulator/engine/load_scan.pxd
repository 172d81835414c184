# Declarations for the compiled build of load_scan.py (see simulator/accel.py): the scan reads the
# engine's instances and their queues through their types, without an attribute lookup.

cimport cython
from simulator.engine.instance cimport Instance
from simulator.engine.queues cimport InstanceQueues

@cython.locals(tokens=bint, found=bint, value=cython.longlong, least=cython.longlong,
               ident=cython.longlong, chosen=cython.longlong, instance=Instance, queues=InstanceQueues)
cpdef object least_loaded(object instances, object load)
