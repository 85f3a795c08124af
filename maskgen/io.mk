# Trace and mask file I/O, trace synthesis; their tests.
