# CUDA backend kernels (nvcc).  They go into libbsa.a with the core.
if HAVE_CUDA
lib_libbsa_a_SOURCES += 
endif
