# CUDA backend kernels (nvcc).  They go into libbsa.a with the core; the
# host logic is lib/cuda_backend.c.  One file per head dim keeps each nvcc
# run short and lets make -j build them side by side.
if HAVE_CUDA
lib_libbsa_a_SOURCES += \
	kernels/kernels.h \
	kernels/attn_fwd.cuh \
	kernels/attn_d64.cu \
	kernels/attn_d128.cu \
	kernels/attn_d256.cu \
	kernels/attn_aux.cu

# GPU test suite: compares every CUDA path with the CPU backend; skips
# (exit 77) without a device.  Check is linked statically so the binary
# starts on GPU machines that do not have it installed.
check_PROGRAMS += tests/gpu/check_gpu
TESTS += tests/gpu/check_gpu
tests_gpu_check_gpu_SOURCES = tests/gpu/check_gpu.c
tests_gpu_check_gpu_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(CUDA_CPPFLAGS)
tests_gpu_check_gpu_LDADD = $(BSA_LIBS) $(CHECK_STATIC_LIBS)
endif

# Development benchmark of the kernels:
# make bench/attn_dev
if HAVE_CUDA
noinst_PROGRAMS += bench/attn_dev
bench_attn_dev_SOURCES = bench/attn_dev.c
bench_attn_dev_LDADD = $(BSA_LIBS)
endif

# The .cu suffix rule has no automatic header dependencies in the tree's
# Makefile; name them here so header edits rebuild the kernels.
if HAVE_CUDA
kernels/attn_d64.$(OBJEXT) kernels/attn_d128.$(OBJEXT) kernels/attn_d256.$(OBJEXT): \
	$(srcdir)/kernels/attn_fwd.cuh $(srcdir)/kernels/kernels.h
kernels/attn_aux.$(OBJEXT): $(srcdir)/kernels/kernels.h
endif

# nvcc's dependency files (-MMD -MF in the .cu rule of Makefile.am).
MOSTLYCLEANFILES += kernels/*.d
