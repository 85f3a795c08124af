# viz: PNG rendering with Cairo and libpng; its tests.
noinst_LIBRARIES += viz/libbsaviz.a
viz_libbsaviz_a_SOURCES = \
	viz/vizint.h \
	viz/png.c \
	viz/draw.c \
	viz/masks.c \
	viz/scores.c \
	viz/chart.c \
	viz/logcharts.c
viz_libbsaviz_a_CFLAGS = $(AM_CFLAGS) $(CAIRO_CFLAGS) $(PNG_CFLAGS) $(HDF5_CFLAGS) \
	$(JANSSON_CFLAGS) $(BLAS_CFLAGS) -O2
noinst_HEADERS += include/bsa/viz.h

check_PROGRAMS += tests/check_viz
TESTS += tests/check_viz
tests_check_viz_SOURCES = tests/check_viz.c tests/test_rand.h
tests_check_viz_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(PNG_CFLAGS) -O2
tests_check_viz_LDADD = viz/libbsaviz.a $(RUNLOG_LIBS) $(CAIRO_LIBS) $(PNG_LIBS) \
	$(JANSSON_LIBS) $(BSA_LIBS) $(CHECK_STATIC_LIBS) -lm
TESTS += tests/viz_cli.sh
EXTRA_DIST += tests/viz_cli.sh
