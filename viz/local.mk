# viz: PNG rendering with Cairo and libpng; its tests.
noinst_LIBRARIES += viz/libbsaviz.a
viz_libbsaviz_a_SOURCES =
viz_libbsaviz_a_CFLAGS = $(AM_CFLAGS) $(CAIRO_CFLAGS) $(PNG_CFLAGS) $(HDF5_CFLAGS) $(JANSSON_CFLAGS)
