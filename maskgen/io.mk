# Trace and mask file I/O, trace synthesis; their tests.
maskgen_libbsamaskgen_a_SOURCES += \
	maskgen/io_h5.h \
	maskgen/io_h5.c \
	maskgen/io_trace.c \
	maskgen/io_masks.c
maskgen_libbsamaskgen_a_SOURCES += maskgen/synth.c

check_PROGRAMS += tests/check_trace
tests_check_trace_SOURCES = tests/check_trace.c
tests_check_trace_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(HDF5_CFLAGS) -O2
tests_check_trace_LDADD = $(MASKGEN_LIBS) $(CHECK_STATIC_LIBS)
TESTS += tests/check_trace
