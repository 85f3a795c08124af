# Mask generators and evaluation; their tests.
# The user's CFLAGS (-O2 by default) come after the per-target -O3, so ask
# for the loop vectoriser's full cost model explicitly: the hot loops of the
# generators (exp, block sums, k-means assignment) depend on it.  Without
# -fno-trapping-math GCC will not turn the float selects (max, clamp) of
# those loops into vector blends; nothing here reads floating-point flags.
# GCC spellings; a compiler that rejects them (clang) simply goes without.
MASKGEN_VEC_CFLAGS := $(shell $(CC) -ftree-vectorize -fvect-cost-model=dynamic \
	-fno-trapping-math -S -o /dev/null -x c /dev/null >/dev/null 2>&1 && \
	echo -ftree-vectorize -fvect-cost-model=dynamic -fno-trapping-math)
maskgen_libbsamaskgen_a_CFLAGS += $(MASKGEN_VEC_CFLAGS)
maskgen_libbsamaskgen_a_SOURCES += \
	maskgen/gen_internal.h \
	maskgen/gen_common.c \
	maskgen/gen_fixed.c \
	maskgen/gen_kmeans.c \
	maskgen/kmeans.c \
	maskgen/eval.c

check_PROGRAMS += tests/check_maskgen
TESTS += tests/check_maskgen
tests_check_maskgen_SOURCES = tests/check_maskgen.c tests/test_rand.h
tests_check_maskgen_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(HDF5_CFLAGS) $(BLAS_CFLAGS)
tests_check_maskgen_LDADD = $(MASKGEN_LIBS) $(CHECK_STATIC_LIBS)

# The verbs end to end: trace synth -> maskgen (each method) -> eval.
TESTS += tests/maskgen_cli.sh
EXTRA_DIST += tests/maskgen_cli.sh
