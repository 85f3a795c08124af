# Benchmark drivers.  sgemm_rate measures the CBLAS rate for the products of
# dense attention, so the CPU backend can be compared with it in one run
# (bench/cpu_vs_sgemm.sh).
noinst_PROGRAMS += bench/sgemm_rate
bench_sgemm_rate_SOURCES = bench/sgemm_rate.c
bench_sgemm_rate_CFLAGS = $(AM_CFLAGS) $(BLAS_CFLAGS) -O2
bench_sgemm_rate_LDADD = $(BLAS_LIBS) -lm
