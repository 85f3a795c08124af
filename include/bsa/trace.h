/*
 * bsa/trace.h - attention traces and block masks in HDF5 (reading and
 * writing).  Generators and evaluation are in bsa/maskgen.h.  File formats: docs/formats.md (DESIGN section 3).
 *
 * In memory, arrays are row-major float32 / int32 / uint8 in the shapes the
 * comments give; q/k/v are always converted to float32 on read.
 * Failures return a status; the message (naming the file, record and
 * dataset) is in bsa_last_error().  Nothing here prints.
 */
#ifndef BSA_TRACE_H
#define BSA_TRACE_H

#include <stdint.h>

#include "bsa/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- traces ----------------------------------------------------------- */

typedef struct bsa_trace bsa_trace; /* an open trace file */

typedef struct bsa_trace_record {
  char *name;
  int32_t num_qo_heads; /* Hq */
  int32_t num_kv_heads; /* Hkv */
  int32_t head_dim;     /* D */
  int64_t qo_len;       /* Sq */
  int64_t kv_len;       /* Sk */
  float *q;             /* [Hq, Sq, D] */
  float *k;             /* [Hkv, Sk, D] */
  float *v;             /* [Hkv, Sk, D] or NULL when the trace has none */
  int32_t layer;
  int32_t step;     /* -1 if none */
  int32_t causal;   /* 0/1 */
  float sm_scale;   /* 0 = 1/sqrt(D) */
} bsa_trace_record;

bsa_status bsa_trace_open(const char *path, bsa_trace **out);
void bsa_trace_close(bsa_trace *trace); /* accepts NULL */
int64_t bsa_trace_num_records(const bsa_trace *trace);
/* Name of record i (sorted by name); NULL when out of range. */
const char *bsa_trace_record_name(const bsa_trace *trace, int64_t i);
bsa_status bsa_trace_read_record(bsa_trace *trace, const char *name,
                                 bsa_trace_record **out);
void bsa_trace_record_free(bsa_trace_record *rec); /* accepts NULL */

/* ---- masks ------------------------------------------------------------ */

typedef struct bsa_mask_record {
  char *name;
  int32_t num_kv_heads; /* Hkv */
  int64_t qo_len;       /* Sq */
  int64_t kv_len;       /* Sk */
  int64_t num_block_rows; /* MB */
  int64_t num_block_cols; /* NB */
  uint8_t *block_mask_map; /* [Hkv, MB, NB] 0/1 */
  int32_t *block_row_sz;   /* [Hkv, MB], sums to Sq per head */
  int32_t *block_col_sz;   /* [Hkv, NB], sums to Sk per head */
  int32_t *q_perm;         /* [Hkv, Sq] or NULL: permuted row t = token q_perm[t] */
  int32_t *k_perm;         /* [Hkv, Sk] or NULL */
  float *block_scores;     /* [Hkv, MB, NB] or NULL */
  double density;          /* NaN when not stored */
  double recall;           /* NaN when not evaluated */
} bsa_mask_record;

typedef struct bsa_masks bsa_masks; /* an open masks file */

bsa_status bsa_masks_open(const char *path, bsa_masks **out);
void bsa_masks_close(bsa_masks *masks); /* accepts NULL */
const char *bsa_masks_method(const bsa_masks *masks);      /* "oracle", ... */
const char *bsa_masks_params_json(const bsa_masks *masks); /* "{...}" */
const char *bsa_masks_trace_path(const bsa_masks *masks);
int64_t bsa_masks_num_records(const bsa_masks *masks);
const char *bsa_masks_record_name(const bsa_masks *masks, int64_t i);
bsa_status bsa_masks_read_record(bsa_masks *masks, const char *name,
                                 bsa_mask_record **out);
void bsa_mask_record_free(bsa_mask_record *rec); /* accepts NULL */

/* ---- writers ------------------------------------------------------------
 * A writer writes to a temporary name beside path and renames it over path
 * on commit, so a failed or aborted write never replaces a good file.
 * Datasets are chunked and compressed. */

typedef struct bsa_trace_writer bsa_trace_writer;
/* dtype: BSA_DTYPE_F32 or BSA_DTYPE_F16 for the q/k/v datasets.  model and
 * source may be NULL. */
bsa_status bsa_trace_writer_create(const char *path, bsa_dtype dtype,
                                   const char *model, const char *source,
                                   bsa_trace_writer **out);
bsa_status bsa_trace_writer_add(bsa_trace_writer *w, const bsa_trace_record *rec);
bsa_status bsa_trace_writer_commit(bsa_trace_writer *w); /* frees w */
void bsa_trace_writer_abort(bsa_trace_writer *w);        /* frees w; accepts NULL */

typedef struct bsa_masks_writer bsa_masks_writer;
/* method, params_json (JSON object text), trace_path and trace_sha256 are
 * stored as root attributes (NULL -> ""). */
bsa_status bsa_masks_writer_create(const char *path, const char *method,
                                   const char *params_json,
                                   const char *trace_path,
                                   const char *trace_sha256,
                                   bsa_masks_writer **out);
/* Writes rec (optional arrays only when non-NULL; density/recall attributes
 * only when not NaN). */
bsa_status bsa_masks_writer_add(bsa_masks_writer *w, const bsa_mask_record *rec);
bsa_status bsa_masks_writer_commit(bsa_masks_writer *w); /* frees w */
void bsa_masks_writer_abort(bsa_masks_writer *w);        /* frees w; accepts NULL */

#ifdef __cplusplus
}
#endif
#endif /* BSA_TRACE_H */
