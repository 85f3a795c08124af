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
bsainclude_HEADERS += include/bsa/viz.h
