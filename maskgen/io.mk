# Trace and mask file I/O, trace synthesis; their tests.
maskgen_libbsamaskgen_a_SOURCES += \
	maskgen/io_h5.h \
	maskgen/io_h5.c \
	maskgen/io_trace.c \
	maskgen/io_masks.c
maskgen_libbsamaskgen_a_SOURCES += maskgen/synth.c
