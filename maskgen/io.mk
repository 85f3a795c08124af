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

# h5py cross-checks: files written by h5py alone read in bsa, files bsa
# writes read in h5py (tests/trace_h5py.py, through tests/trace_copy).
check_PROGRAMS += tests/trace_copy
tests_trace_copy_SOURCES = tests/trace_copy.c
tests_trace_copy_LDADD = $(MASKGEN_LIBS)
TESTS += tests/trace_h5py.sh tests/trace_cli.sh tests/trace_dump.sh
EXTRA_DIST += tests/trace_h5py.sh tests/trace_h5py.py tests/trace_cli.sh tests/trace_dump.sh \
	tests/trace_dump_test.py
