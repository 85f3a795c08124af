# Mask generators and evaluation; their tests.
maskgen_libbsamaskgen_a_SOURCES += \
	maskgen/gen_internal.h \
	maskgen/gen_common.c \
	maskgen/gen_fixed.c \
	maskgen/gen_kmeans.c \
	maskgen/kmeans.c \
	maskgen/eval.c

check_PROGRAMS += tests/check_maskgen
TESTS += tests/check_maskgen
tests_check_maskgen_SOURCES = tests/check_maskgen.c
tests_check_maskgen_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(HDF5_CFLAGS) $(BLAS_CFLAGS)
tests_check_maskgen_LDADD = $(MASKGEN_LIBS) $(CHECK_STATIC_LIBS)
