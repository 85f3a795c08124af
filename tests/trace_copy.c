/*
 * tests/trace_copy.c - copies a trace or masks file through bsa's reader and
 * writer, for the h5py cross-checks in tests/trace_h5py.py:
 *
 *     trace_copy trace IN.h5 OUT.h5 f32|f16
 *     trace_copy masks IN.h5 OUT.h5
 *
 * Every record is read (and so checked) and written again with the same
 * attributes.  Exit 0 on success, 1 with bsa's message on stderr.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bsa.h"
#include "bsa/trace.h"

static int fail(void) {
  fprintf(stderr, "trace_copy: %s\n", bsa_last_error());
  return 1;
}

static int copy_trace(const char *in, const char *out, bsa_dtype dt) {
  bsa_trace *t;
  if (bsa_trace_open(in, &t) != BSA_OK) return fail();
  bsa_trace_writer *w;
  if (bsa_trace_writer_create(out, dt, bsa_trace_model(t), bsa_trace_source(t), &w) != BSA_OK) {
    bsa_trace_close(t);
    return fail();
  }
  for (int64_t i = 0; i < bsa_trace_num_records(t); i++) {
    bsa_trace_record *r;
    if (bsa_trace_read_record(t, bsa_trace_record_name(t, i), &r) != BSA_OK ||
        bsa_trace_writer_add(w, r) != BSA_OK) {
      bsa_trace_writer_abort(w);
      bsa_trace_close(t);
      return fail();
    }
    bsa_trace_record_free(r);
  }
  bsa_trace_close(t);
  return bsa_trace_writer_commit(w) == BSA_OK ? 0 : fail();
}

static int copy_masks(const char *in, const char *out) {
  bsa_masks *m;
  if (bsa_masks_open(in, &m) != BSA_OK) return fail();
  bsa_masks_writer *w;
  if (bsa_masks_writer_create(out, bsa_masks_method(m), bsa_masks_params_json(m),
                              bsa_masks_trace_path(m), bsa_masks_trace_sha256(m), &w) != BSA_OK) {
    bsa_masks_close(m);
    return fail();
  }
  for (int64_t i = 0; i < bsa_masks_num_records(m); i++) {
    bsa_mask_record *r;
    if (bsa_masks_read_record(m, bsa_masks_record_name(m, i), &r) != BSA_OK ||
        bsa_masks_writer_add(w, r) != BSA_OK) {
      bsa_masks_writer_abort(w);
      bsa_masks_close(m);
      return fail();
    }
    bsa_mask_record_free(r);
  }
  bsa_masks_close(m);
  return bsa_masks_writer_commit(w) == BSA_OK ? 0 : fail();
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "trace") && (!strcmp(argv[4], "f32") || !strcmp(argv[4], "f16")))
    return copy_trace(argv[2], argv[3], !strcmp(argv[4], "f16") ? BSA_DTYPE_F16 : BSA_DTYPE_F32);
  if (argc == 4 && !strcmp(argv[1], "masks")) return copy_masks(argv[2], argv[3]);
  fprintf(stderr, "usage: trace_copy trace IN OUT f32|f16 | trace_copy masks IN OUT\n");
  return 2;
}
