/*
 * bsa/trace.h - attention traces and block masks in HDF5 (reading and
 * writing).  Generators and evaluation are in bsa/maskgen.h.  File formats: docs/formats.md (DESIGN
 * section 3).
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
  int32_t step;   /* -1 if none */
  int32_t causal; /* 0/1 */
  float sm_scale; /* 0 = 1/sqrt(D) */
  /* Optional planted cluster of every token, as synthetic traces store it
   * (dataset cluster_id): cluster_id[h * Sk + t] is the cluster of token t
   * (its query and its key) for kv head h.  Only for Sq == Sk.  NULL when
   * the trace has none; num_clusters is then 0, else max id + 1 (or the
   * number of planted clusters when written by bsa). */
  int32_t *cluster_id; /* [Hkv, Sk] or NULL */
  int32_t num_clusters;
} bsa_trace_record;

/* Opens a trace file and checks its root attributes (format = "bsa-trace",
 * format_version = 1) and the /records group; the records themselves are
 * checked when read.  Every group under /records is a record, whatever its
 * name.  On failure *out is NULL.  Errors: BSA_ERR_IO (missing or unreadable
 * file), BSA_ERR_FORMAT (not HDF5, truncated, not a bsa trace),
 * BSA_ERR_INVALID_ARG (NULL arguments). */
bsa_status bsa_trace_open(const char *path, bsa_trace **out);
void bsa_trace_close(bsa_trace *trace); /* accepts NULL */
int64_t bsa_trace_num_records(const bsa_trace *trace);
/* Name of record i (sorted by name); NULL when out of range.  Owned by the
 * trace. */
const char *bsa_trace_record_name(const bsa_trace *trace, int64_t i);
/* Reads and checks one record: q and k present, rank 3, float16 or float32
 * (bfloat16 stored as an HDF5 float type is accepted too), Hq % Hkv == 0,
 * equal head_dim, v (when present) shaped like k, attributes of the right
 * type (causal is required; layer and step default to -1, sm_scale to 0).
 * *out is allocated (free with bsa_trace_record_free).  Errors:
 * BSA_ERR_INVALID_ARG (no such record), BSA_ERR_FORMAT (the message names
 * file, record and dataset), BSA_ERR_IO, BSA_ERR_NOMEM. */
bsa_status bsa_trace_read_record(bsa_trace *trace, const char *name, bsa_trace_record **out);
void bsa_trace_record_free(bsa_trace_record *rec); /* accepts NULL */

/* Root attributes "model" and "source" ("" when absent), and the path the
 * trace was opened with.  Owned by the trace. */
const char *bsa_trace_model(const bsa_trace *trace);
const char *bsa_trace_source(const bsa_trace *trace);
const char *bsa_trace_path(const bsa_trace *trace);

/* What a record holds, without reading its arrays (for `bsa trace info`).
 * The same checks as bsa_trace_read_record except those that need the
 * values (cluster ids). */
typedef struct bsa_trace_record_info {
  int32_t num_qo_heads, num_kv_heads, head_dim;
  int64_t qo_len, kv_len;
  char q_dtype[24], k_dtype[24]; /* "float16", "float32", "bfloat16" */
  char v_dtype[24];              /* "" when there is no v */
  int32_t has_v;
  int32_t has_cluster_id;
  int32_t layer, step, causal;
  float sm_scale; /* as stored; 0 when absent */
} bsa_trace_record_info;
bsa_status bsa_trace_get_record_info(bsa_trace *trace, const char *name,
                                     bsa_trace_record_info *out);

/* ---- masks ------------------------------------------------------------ */

typedef struct bsa_mask_record {
  char *name;
  int32_t num_kv_heads;    /* Hkv */
  int64_t qo_len;          /* Sq */
  int64_t kv_len;          /* Sk */
  int64_t num_block_rows;  /* MB */
  int64_t num_block_cols;  /* NB */
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

/* Opens a masks file and checks its root attributes (format = "bsa-masks",
 * format_version = 1).  Missing method/params/trace/trace_sha256 read as
 * "" ("{}" for params).  Errors as for bsa_trace_open. */
bsa_status bsa_masks_open(const char *path, bsa_masks **out);
void bsa_masks_close(bsa_masks *masks);                    /* accepts NULL */
const char *bsa_masks_method(const bsa_masks *masks);      /* "oracle", ... */
const char *bsa_masks_params_json(const bsa_masks *masks); /* "{...}" */
const char *bsa_masks_trace_path(const bsa_masks *masks);
const char *bsa_masks_trace_sha256(const bsa_masks *masks);
const char *bsa_masks_path(const bsa_masks *masks);
int64_t bsa_masks_num_records(const bsa_masks *masks);
const char *bsa_masks_record_name(const bsa_masks *masks, int64_t i);
/* Reads and checks one record: block_mask_map rank 3, sizes [Hkv, MB] and
 * [Hkv, NB] of an integer type, non-negative, summing to the same Sq (Sk)
 * for every head (and to the record attributes qo_len / kv_len when
 * stored); q_perm / k_perm, when present, [Hkv, Sq] / [Hkv, Sk]
 * permutations of 0..S-1; block_scores shaped like the map.  Map entries
 * are returned as 0/1.  Errors as for bsa_trace_read_record. */
bsa_status bsa_masks_read_record(bsa_masks *masks, const char *name, bsa_mask_record **out);
void bsa_mask_record_free(bsa_mask_record *rec); /* accepts NULL */

/* ---- writers ------------------------------------------------------------
 * A writer writes to a temporary name beside path and renames it over path
 * on commit, so a failed or aborted write never replaces a good file.
 * Datasets are chunked and compressed. */

typedef struct bsa_trace_writer bsa_trace_writer;
/* dtype: BSA_DTYPE_F32 or BSA_DTYPE_F16 for the q/k/v datasets.  model and
 * source may be NULL.  The temporary file is created at once, so a path in
 * a missing or read-only folder fails here (BSA_ERR_IO). */
bsa_status bsa_trace_writer_create(const char *path, bsa_dtype dtype, const char *model,
                                   const char *source, bsa_trace_writer **out);
/* Checks rec completely (name, shapes, Hq % Hkv, causal 0/1, finite values
 * that fit the dtype, cluster ids) before writing anything: an invalid
 * record returns BSA_ERR_INVALID_ARG and leaves the writer usable.  A
 * failure while writing (BSA_ERR_IO) spoils the writer: commit then fails
 * and removes the temporary file.  rec->v and rec->cluster_id are written
 * only when non-NULL; sm_scale only when non-zero.  Zero-initialise records
 * you fill yourself. */
bsa_status bsa_trace_writer_add(bsa_trace_writer *w, const bsa_trace_record *rec);
/* Finishes the file and renames it over path.  On failure the temporary
 * file is removed and path is untouched. */
bsa_status bsa_trace_writer_commit(bsa_trace_writer *w); /* frees w */
void bsa_trace_writer_abort(bsa_trace_writer *w);        /* frees w; accepts NULL */

typedef struct bsa_masks_writer bsa_masks_writer;
/* method, params_json (JSON object text), trace_path and trace_sha256 are
 * stored as root attributes (NULL -> ""). */
bsa_status bsa_masks_writer_create(const char *path, const char *method, const char *params_json,
                                   const char *trace_path, const char *trace_sha256,
                                   bsa_masks_writer **out);
/* Writes rec (optional arrays only when non-NULL; density/recall attributes
 * only when not NaN; qo_len and kv_len as record attributes).  Checks first
 * that the map holds 0/1, sizes are non-negative and sum to qo_len / kv_len
 * for every head and perms are permutations: an invalid record returns
 * BSA_ERR_INVALID_ARG and leaves the writer usable; a failure while
 * writing spoils it (as for the trace writer). */
bsa_status bsa_masks_writer_add(bsa_masks_writer *w, const bsa_mask_record *rec);
bsa_status bsa_masks_writer_commit(bsa_masks_writer *w); /* frees w */
void bsa_masks_writer_abort(bsa_masks_writer *w);        /* frees w; accepts NULL */

/* ---- synthetic traces ----------------------------------------------------
 * Deterministic traces with the structure real attention shows, planted so
 * that tests and generators have known answers (docs/formats.md describes
 * the model).  For every record and kv head, with sm_scale = 1/sqrt(D):
 *   - attention sinks: the first num_sinks keys get a large logit from
 *     every query;
 *   - local windows: queries and keys share a slowly varying positional
 *     component (random low frequencies below pi / window), so a query
 *     attends to keys within about `window` tokens;
 *   - vertical stripes: num_stripes key positions (random, shared by the
 *     heads of a record) get a high logit from every query;
 *   - token clusters: each token belongs to one of num_clusters clusters
 *     (runs of about 8 tokens, scattered over the sequence, a different
 *     assignment per kv head); its query and key carry the cluster's
 *     centroid direction.  The assignment is stored as cluster_id.
 * The components live in orthogonal subspaces that a random rotation per
 * head mixes, plus Gaussian noise; v carries a cluster mean plus noise.
 * Query heads of a GQA group share their kv head's structure with their
 * own strengths and noise.  Everything comes from one seeded generator
 * (xoshiro256**), so a seed gives the same trace on every machine. */
typedef struct bsa_trace_synth_params {
  int32_t num_records;  /* records (layers 0..N-1), named "layer00", ... */
  int32_t num_qo_heads; /* Hq */
  int32_t num_kv_heads; /* Hkv, divides Hq (Hkv == Hq: MHA) */
  int32_t head_dim;     /* D >= 8 */
  int64_t seq_len;      /* S = Sq = Sk >= 16 */
  uint64_t seed;
  int32_t causal;       /* stored as the records' causal attribute */
  int32_t num_clusters; /* >= 1 */
  int32_t num_sinks;    /* >= 0, < S */
  int32_t num_stripes;  /* >= 0, num_sinks + num_stripes <= S */
  int32_t window;       /* local window in tokens, >= 1 */
} bsa_trace_synth_params;

/* Defaults: 4 records, Hq 4, Hkv 2, D 64, S 1024, seed 1, not causal,
 * 8 clusters, 4 sinks, 8 stripes, window 32. */
void bsa_trace_synth_defaults(bsa_trace_synth_params *p);

/* Generates record index (0-based) of the trace p describes; records are
 * independent of each other and of num_records.  *out as from
 * bsa_trace_read_record (free with bsa_trace_record_free), with v and
 * cluster_id.  BSA_ERR_INVALID_ARG names a parameter out of range. */
bsa_status bsa_trace_synth_record(const bsa_trace_synth_params *p, int32_t index,
                                  bsa_trace_record **out);

/* Writes the whole trace to path (through a bsa_trace_writer, so a failure
 * leaves an existing file untouched), q/k/v in dtype (f32 or f16); model =
 * "synthetic", source = the parameters. */
bsa_status bsa_trace_synth_write(const char *path, const bsa_trace_synth_params *p,
                                 bsa_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif /* BSA_TRACE_H */
