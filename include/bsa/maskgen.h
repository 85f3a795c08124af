/*
 * bsa/maskgen.h - block-mask generators and mask evaluation.
 *
 * A generator reads one trace record (bsa/trace.h: q [Hq, Sq, D],
 * k [Hkv, Sk, D]) and returns one mask record: per kv head a block map
 * [Hkv, MB, NB], block sizes [Hkv, MB] / [Hkv, NB], optional token
 * permutations and the block scores it selected from.  Methods:
 *
 *   oracle  exact softmax mass of every (row block, column block) of
 *           softmax(sm_scale * Q K^T) (causal when the record is), averaged
 *           over the rows of the row block and the query heads of a kv
 *           group; fixed blocks.
 *   pooled  softmax of the logits of mean-pooled Q and K blocks, weighted by
 *           the number of visible keys of each block (MInference /
 *           SpargeAttn style); fixed blocks.
 *   kmeans  per kv head, k-means of the query tokens (for GQA the group's
 *           query vectors concatenated per token) and of the key tokens; a
 *           permutation makes each cluster contiguous, block sizes are the
 *           cluster sizes (0 for an empty cluster), the score is the
 *           size-weighted softmax of the centroid logits (Sparse VideoGen2).
 *
 * Selection, per row block of each head, from that row's scores (each row
 * sums to 1 over the blocks with visible keys):
 *   top-p      the shortest prefix of the blocks in descending score whose
 *              mass reaches p (forced blocks count toward it);
 *   top-k      the k highest-scoring blocks, plus the forced ones;
 *   threshold  every block whose score is at least x, plus the forced ones.
 * Blocks without a visible (query, key) pair (above the causal diagonal,
 * or of an empty cluster) are never selected.  Fixed-block methods force on
 * the first --sink-blocks column blocks and a band of --local-blocks column
 * blocks ending at the diagonal (and, when not causal, the same number past
 * it).  kmeans keeps at least floor(min_kc_ratio * NB) key clusters per
 * query cluster (the highest-scoring non-empty ones) whatever top-p says.
 *
 * Evaluation runs the mask through libbsa (variable-block plan on the
 * permuted q/k/v, output un-permuted) and a dense plan on the same inputs,
 * and reports density, attention recall and output error per kv head.
 *
 * Errors: functions return a bsa_status; the message (naming the argument,
 * the value and the limit, or the record) is in bsa_last_error().  Nothing
 * here prints.  Generators start their own worker threads (params
 * num_threads) and keep OpenBLAS at one thread while they run, restoring
 * its setting after; that setting is process-wide, so run one generator at
 * a time in a process that uses OpenBLAS elsewhere.  Evaluation uses the
 * threads of the libbsa context it is given.
 */
#ifndef BSA_MASKGEN_H
#define BSA_MASKGEN_H

#include <stdint.h>

#include "bsa/core.h"
#include "bsa/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameters ------------------------------------------------------- */

typedef enum bsa_maskgen_method {
  BSA_MASKGEN_ORACLE = 0,
  BSA_MASKGEN_POOLED = 1,
  BSA_MASKGEN_KMEANS = 2
} bsa_maskgen_method;

/* "oracle", "pooled", "kmeans". */
const char *bsa_maskgen_method_name(bsa_maskgen_method method);
/* Parses a method name; BSA_ERR_INVALID_ARG (naming the known methods)
 * otherwise. */
bsa_status bsa_maskgen_method_parse(const char *name, bsa_maskgen_method *out);

typedef enum bsa_maskgen_select {
  BSA_MASKGEN_SELECT_NONE = 0, /* not chosen yet (an error for oracle/pooled) */
  BSA_MASKGEN_SELECT_TOP_P = 1,
  BSA_MASKGEN_SELECT_TOP_K = 2,
  BSA_MASKGEN_SELECT_THRESHOLD = 3
} bsa_maskgen_select;

typedef enum bsa_kmeans_init {
  BSA_KMEANS_INIT_PLUSPLUS = 0, /* k-means++ seeding (default) */
  BSA_KMEANS_INIT_RANDOM = 1    /* distinct tokens drawn uniformly */
} bsa_kmeans_init;

typedef struct bsa_maskgen_params {
  /* oracle, pooled: fixed blocks of block_q rows x block_k columns (the last
   * block of each axis may be partial). */
  int64_t block_q;
  int64_t block_k;
  bsa_maskgen_select select;
  double top_p;         /* (0, 1] */
  int64_t top_k;        /* >= 1 */
  double threshold;     /* [0, 1] */
  int64_t sink_blocks;  /* >= 0 */
  int64_t local_blocks; /* >= 0 */
  /* kmeans (always top-p selection with top_p). */
  int64_t q_clusters;  /* 1 .. Sq */
  int64_t k_clusters;  /* 1 .. Sk */
  int32_t iters;       /* Lloyd iterations, >= 1 (stops early when stable) */
  double min_kc_ratio; /* [0, 1] */
  uint64_t seed;
  bsa_kmeans_init init;
  /* all */
  int32_t num_threads; /* worker threads; 0 = online CPUs */
} bsa_maskgen_params;

/* Defaults: 64x64 blocks, no selection chosen, top_p 0.9, top_k 8,
 * threshold 0.01, no sinks or local band, 100 query and 100 key clusters,
 * 20 iterations, min_kc_ratio 0.1, seed 0, k-means++, all cores. */
void bsa_maskgen_params_init(bsa_maskgen_params *params);

/* Checks params for method against a record of Sq query and Sk key tokens
 * (rec may be NULL to check only what does not depend on it).
 * BSA_ERR_INVALID_ARG names the option ("--top-p = 1.5 is outside (0, 1]",
 * "--q-clusters = 300 exceeds the 256 query tokens of record 'r0'"). */
bsa_status bsa_maskgen_params_check(bsa_maskgen_method method, const bsa_maskgen_params *params,
                                    const bsa_trace_record *rec);

/* The parameters that matter for method as a JSON object text, e.g.
 * {"block_q":64,"block_k":64,"select":"top_p","top_p":0.9,...}.  Returned
 * string is malloc'ed (caller frees); NULL when out of memory. */
char *bsa_maskgen_params_json(bsa_maskgen_method method, const bsa_maskgen_params *params);

/* SHA-256 of a file as 64 lowercase hex digits and a NUL (the fingerprint
 * of the trace that masks files record).  BSA_ERR_IO names the file when it
 * cannot be read. */
bsa_status bsa_maskgen_file_sha256(const char *path, char hex[65]);

/* ---- generators --------------------------------------------------------
 * Each reads rec (borrowed) and on success stores a new mask record in *out
 * (caller frees it with bsa_mask_record_free).  The record's name is
 * copied, block_scores are filled, density is the record's compute density
 * (see bsa_mask_density) and recall is NaN.  On failure *out is NULL.
 * BSA_ERR_INVALID_ARG: bad params (see bsa_maskgen_params_check) or a record
 * with inconsistent shapes; BSA_ERR_UNSUPPORTED: kmeans on a causal record
 * (causal masking in original token order cannot be expressed on permuted
 * variable blocks); BSA_ERR_NOMEM. */
bsa_status bsa_maskgen_oracle(const bsa_trace_record *rec, const bsa_maskgen_params *params,
                              bsa_mask_record **out);
bsa_status bsa_maskgen_pooled(const bsa_trace_record *rec, const bsa_maskgen_params *params,
                              bsa_mask_record **out);
bsa_status bsa_maskgen_kmeans(const bsa_trace_record *rec, const bsa_maskgen_params *params,
                              bsa_mask_record **out);
/* Dispatches to one of the three. */
bsa_status bsa_maskgen_run(bsa_maskgen_method method, const bsa_trace_record *rec,
                           const bsa_maskgen_params *params, bsa_mask_record **out);

/* ---- k-means on its own ----------------------------------------------- */

/* Clusters n points x [n, dim] (row-major, borrowed) into k clusters with
 * iters Lloyd iterations (fewer when assignments stop changing), distances
 * as ||x||^2 - 2 x.c + ||c||^2 through sgemm.  Deterministic for a seed.
 * Outputs (caller-allocated): labels [n] in 0..k-1, centroids [k, dim]
 * (mean of the members; an empty cluster keeps its previous centroid),
 * sizes [k].  Clusters are numbered in the order of their first member, so
 * the labels do not depend on the seed's arbitrary numbering; empty
 * clusters come last.  *iters_done (may be NULL) receives the iterations
 * run.  Single-threaded (callers run several at once).
 * BSA_ERR_INVALID_ARG: n < 1, dim < 1, k < 1, k > n, iters < 1;
 * BSA_ERR_NOMEM. */
bsa_status bsa_kmeans(const float *x, int64_t n, int64_t dim, int64_t k, int32_t iters,
                      uint64_t seed, bsa_kmeans_init init, int32_t *labels, float *centroids,
                      int32_t *sizes, int32_t *iters_done);

/* ---- mask records ------------------------------------------------------ */

/* Checks that mask fits rec: same kv heads and lengths, every head's block
 * sizes non-negative and summing to Sq / Sk, map entries 0/1, permutations
 * (when present) permutations of 0..S-1.  Messages name the record and the
 * dataset.  BSA_ERR_FORMAT on a mismatch. */
bsa_status bsa_mask_record_check(const bsa_mask_record *mask, const bsa_trace_record *rec);

/* Fills a libbsa variable-block description that borrows mask's arrays
 * (valid while mask lives).  It describes attention on the permuted
 * sequences when the mask has permutations (see bsa_mask_permute_qkv). */
void bsa_mask_var_desc(const bsa_mask_record *mask, bsa_var_desc *out);

/* 1 when the mask carries a query or key permutation that is not the
 * identity. */
int bsa_mask_is_permuted(const bsa_mask_record *mask);

/* Builds the inputs of a variable-block run of mask on rec's own data: q
 * [Hq, Sq, D], k and v [Hkv, Sk, D] (HND, float32) with rows reordered by
 * the mask's permutations (query heads of kv group h use q_perm[h]).  The
 * arrays are new malloc'ed copies (caller frees with free()); *v is NULL
 * when rec has no v.  Run them with layout HND and the desc of
 * bsa_mask_var_desc; bsa_mask_unpermute_o puts the output back in token
 * order.  BSA_ERR_FORMAT when the mask does not fit rec, BSA_ERR_NOMEM. */
bsa_status bsa_mask_permute_qkv(const bsa_trace_record *rec, const bsa_mask_record *mask, float **q,
                                float **k, float **v);

/* o [Hq, Sq, D] = o_perm with rows put back in token order (HND, float32;
 * o and o_perm must not overlap).  num_qo_heads must be a multiple of the
 * mask's kv heads. */
void bsa_mask_unpermute_o(const bsa_mask_record *mask, int32_t num_qo_heads, int32_t head_dim,
                          const float *o_perm, float *o);

/* Densities of one kv head of a mask (head = -1: the whole record, pairs
 * summed over heads). */
typedef struct bsa_mask_density {
  double full;    /* kept (query, key) pairs / (Sq * Sk) */
  double causal;  /* kept causally visible pairs / visible pairs; NaN when
                     not causal */
  double blocks;  /* kept blocks / (MB * NB), unweighted */
  double compute; /* what attention computes: causal when causal, else full */
} bsa_mask_density;

/* causal applies the global causal rule of bsa/core.h in the original token
 * order; a permuted mask with causal = 1 is BSA_ERR_UNSUPPORTED. */
bsa_status bsa_mask_density_get(const bsa_mask_record *mask, int32_t head, int32_t causal,
                                bsa_mask_density *out);

/* ---- evaluation --------------------------------------------------------- */

typedef struct bsa_eval_options {
  /* 0: every query row.  Else about this many query rows are used, drawn
   * as runs of 64 consecutive tokens, one run from each of sample_rows/64
   * equal strata of the sequence (so early and late rows are both seen). */
  int64_t sample_rows;
  uint64_t seed; /* which runs are drawn */
  /* Called now and then with the fraction done (0..1); may be NULL. */
  void (*progress)(void *user, double fraction);
  void *progress_user;
} bsa_eval_options;

typedef struct bsa_eval_metrics {
  int32_t head; /* kv head, or -1 for the whole record */
  bsa_mask_density density;
  /* Mean over evaluated rows (and the group's query heads) of the share of
   * the row's softmax mass inside the mask: exp(lse_sparse - lse_dense).
   * Rows without any visible key are left out. */
  double recall;
  double recall_min; /* the worst row */
  /* Output error of the sparse output against dense attention over all
   * evaluated rows, query heads of the group and dims: ||s - d||_2 /
   * ||d||_2, ||s - d||_1 / ||d||_1, <s, d> / (||s|| ||d||).  NaN when the
   * trace has no v. */
  double rel_l2;
  double rel_l1;
  double cosine;
  int64_t rows; /* query rows evaluated per query head */
} bsa_eval_metrics;

typedef struct bsa_eval_result {
  int32_t num_heads;       /* Hkv */
  bsa_eval_metrics *heads; /* [num_heads] */
  bsa_eval_metrics total;  /* head = -1 */
  int64_t rows_evaluated;  /* query rows per query head (== Sq unless sampled) */
  int32_t sampled;         /* 1 when rows were sampled */
  int32_t has_v;
  /* The query rows used: runs [run_start[r], run_start[r] + run_len[r]),
   * one run [0, Sq) when not sampled. */
  int64_t num_runs;
  int64_t *run_start; /* [num_runs] */
  int64_t *run_len;   /* [num_runs] */
  double time_ms;
} bsa_eval_result;

/* Evaluates mask on rec through libbsa on ctx (a CPU or CUDA context;
 * borrowed).  On success *out is filled (free its arrays with
 * bsa_eval_result_free).  opts may be NULL (every row).
 * BSA_ERR_FORMAT: the mask does not fit the record;
 * BSA_ERR_UNSUPPORTED: a permuted mask on a causal record;
 * errors of libbsa are passed on with their message. */
bsa_status bsa_mask_eval(bsa_ctx *ctx, const bsa_trace_record *rec, const bsa_mask_record *mask,
                         const bsa_eval_options *opts, bsa_eval_result *out);

/* Frees the arrays of a result (not the struct); accepts NULL. */
void bsa_eval_result_free(bsa_eval_result *result);

#ifdef __cplusplus
}
#endif
#endif /* BSA_MASKGEN_H */
