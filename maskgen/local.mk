# maskgen: traces and masks in HDF5 (io.mk), generators and evaluation (gen.mk).
noinst_LIBRARIES += maskgen/libbsamaskgen.a
maskgen_libbsamaskgen_a_SOURCES =
maskgen_libbsamaskgen_a_CFLAGS = $(AM_CFLAGS) $(HDF5_CFLAGS) $(JANSSON_CFLAGS) \
	$(CRYPTO_CFLAGS) $(BLAS_CFLAGS) -O3
# Module headers serve the bsa tool; only libbsa (core.h) is installed.
noinst_HEADERS += include/bsa/trace.h include/bsa/maskgen.h
MASKGEN_LIBS = maskgen/libbsamaskgen.a $(BSA_LIBS) $(BLAS_LIBS) $(HDF5_LIBS) $(JANSSON_LIBS) \
	$(CRYPTO_LIBS) -lm
include $(srcdir)/maskgen/io.mk
include $(srcdir)/maskgen/gen.mk
