# runlog: the experiment log over SQLite; its tests.
noinst_LIBRARIES += runlog/libbsarunlog.a
runlog_libbsarunlog_a_SOURCES =
runlog_libbsarunlog_a_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS) $(CRYPTO_CFLAGS) $(JANSSON_CFLAGS)
bsainclude_HEADERS += include/bsa/runlog.h
RUNLOG_LIBS = runlog/libbsarunlog.a $(SQLITE_LIBS) $(CRYPTO_LIBS) $(JANSSON_LIBS) lib/libbsa.a $(BLAS_LIBS) $(CUDA_LIBS) -lpthread -lm
