# Core (libbsa) tests.  Module tests live in each module's fragment.
check_PROGRAMS += tests/check_attention
TESTS += tests/check_attention
tests_check_attention_SOURCES = tests/check_attention.c tests/attn_ref.h
tests_check_attention_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -O2
tests_check_attention_LDADD = $(BSA_LIBS) $(CHECK_STATIC_LIBS) -lm

# The bench verb and --version from the command line.
TESTS += tests/bench_cli.sh
EXTRA_DIST += tests/bench_cli.sh tests/cli_lib.sh

# make install into a scratch folder and a program built against it.
TESTS += tests/install_check.sh
EXTRA_DIST += tests/install_check.sh
