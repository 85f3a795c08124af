# libbsa: core library (status, context, plan/work list, CPU backend).
lib_LIBRARIES += lib/libbsa.a
lib_libbsa_a_SOURCES = \
	lib/internal.h \
	lib/status.c \
	lib/convert.c \
	lib/context.c \
	lib/validate.c \
	lib/worklist.c \
	lib/plan.c \
	lib/cpu_backend.c \
	lib/cpu_gemm.c
lib_libbsa_a_CFLAGS = $(AM_CFLAGS) -O3
if HAVE_CUDA
lib_libbsa_a_SOURCES += lib/cuda_backend.c
lib_libbsa_a_CFLAGS += $(CUDA_CPPFLAGS)
endif
# Everything a program linking libbsa.a needs besides it.
BSA_LIBS = lib/libbsa.a $(CUDA_LIBS) $(PTHREAD_LIBS) -lm
