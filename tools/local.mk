# The `bsa` command line.  Each verb lives in its own cmd_*.c file.
bin_PROGRAMS += tools/bsa
tools_bsa_SOURCES = \
	tools/cli.h \
	tools/cli.c \
	tools/bsa.c \
	tools/cmd_bench.c \
	tools/bench.h \
	tools/bench_common.c \
	tools/bench_random.c \
	tools/bench_masks.c \
	tools/cmd_runs.c \
	tools/cmd_trace.c \
	tools/cmd_maskgen.c \
	tools/cmd_eval.c \
	tools/cmd_viz.c
tools_bsa_CFLAGS = $(AM_CFLAGS) $(HDF5_CFLAGS) $(CAIRO_CFLAGS) $(PNG_CFLAGS) \
	$(SQLITE_CFLAGS) $(JANSSON_CFLAGS)
tools_bsa_LDADD = viz/libbsaviz.a maskgen/libbsamaskgen.a runlog/libbsarunlog.a \
	$(BSA_LIBS) $(BLAS_LIBS) $(HDF5_LIBS) $(CAIRO_LIBS) $(PNG_LIBS) $(SQLITE_LIBS) \
	$(JANSSON_LIBS) $(CRYPTO_LIBS) -lm
