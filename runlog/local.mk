# runlog: the experiment log over SQLite; its tests.
noinst_LIBRARIES += runlog/libbsarunlog.a
runlog_libbsarunlog_a_SOURCES = \
	runlog/runlog_int.h \
	runlog/schema.c \
	runlog/record.c \
	runlog/query.c \
	runlog/export.c \
	runlog/textout.c \
	runlog/sysinfo.c \
	runlog/sha256.c
runlog_libbsarunlog_a_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS) $(CRYPTO_CFLAGS) $(JANSSON_CFLAGS)
noinst_HEADERS += include/bsa/runlog.h
RUNLOG_LIBS = runlog/libbsarunlog.a $(SQLITE_LIBS) $(CRYPTO_LIBS) $(JANSSON_LIBS) lib/libbsa.a $(BLAS_LIBS) $(CUDA_LIBS) -lpthread -lm

check_PROGRAMS += tests/check_runlog
tests_check_runlog_SOURCES = tests/check_runlog.c
tests_check_runlog_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SQLITE_CFLAGS) $(JANSSON_CFLAGS) \
	$(CRYPTO_CFLAGS)
tests_check_runlog_LDADD = $(RUNLOG_LIBS) $(CHECK_STATIC_LIBS)
TESTS += tests/check_runlog tests/runlog_cli.sh
EXTRA_DIST += tests/runlog_cli.sh
