/*
 * maskgen/gen_common.c - what the generators share: parameters (defaults,
 * checks, JSON), mask records (allocation, checks, permutation of inputs,
 * densities), block selection and a small worker pool.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_internal.h"

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

/* ---- methods and parameters -------------------------------------------- */

const char *bsa_maskgen_method_name(bsa_maskgen_method method) {
  switch (method) {
    case BSA_MASKGEN_ORACLE:
      return "oracle";
    case BSA_MASKGEN_POOLED:
      return "pooled";
    case BSA_MASKGEN_KMEANS:
      return "kmeans";
  }
  return "unknown";
}

bsa_status bsa_maskgen_method_parse(const char *name, bsa_maskgen_method *out) {
  static const bsa_maskgen_method all[] = {BSA_MASKGEN_ORACLE, BSA_MASKGEN_POOLED,
                                           BSA_MASKGEN_KMEANS};
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++) {
    if (strcmp(name, bsa_maskgen_method_name(all[i])) == 0) {
      *out = all[i];
      return BSA_OK;
    }
  }
  return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                   "--method = '%s' is not a method (oracle, pooled, kmeans)",
                   name ? name : "(null)");
}

void bsa_maskgen_params_init(bsa_maskgen_params *p) {
  memset(p, 0, sizeof *p);
  p->block_q = 64;
  p->block_k = 64;
  p->select = BSA_MASKGEN_SELECT_NONE;
  p->top_p = 0.9;
  p->top_k = 8;
  p->threshold = 0.01;
  p->q_clusters = 100;
  p->k_clusters = 100;
  p->iters = 20;
  p->min_kc_ratio = 0.1;
  p->seed = 0;
  p->init = BSA_KMEANS_INIT_PLUSPLUS;
  p->num_threads = 0;
}

static const char *select_name(bsa_maskgen_select s) {
  switch (s) {
    case BSA_MASKGEN_SELECT_TOP_P:
      return "top_p";
    case BSA_MASKGEN_SELECT_TOP_K:
      return "top_k";
    case BSA_MASKGEN_SELECT_THRESHOLD:
      return "threshold";
    case BSA_MASKGEN_SELECT_NONE:
      break;
  }
  return "none";
}

bsa_status bsa__trace_record_check(const bsa_trace_record *rec) {
  if (!rec) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "trace record is NULL");
  const char *nm = rec->name ? rec->name : "(unnamed)";
  if (rec->num_qo_heads < 1 || rec->num_kv_heads < 1 || rec->num_qo_heads % rec->num_kv_heads != 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "record '%s': %d query heads are not a multiple of %d kv heads", nm,
                     rec->num_qo_heads, rec->num_kv_heads);
  if (rec->head_dim < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "record '%s': head_dim = %d (must be >= 1)", nm,
                     rec->head_dim);
  if (rec->qo_len < 1 || rec->kv_len < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "record '%s': qo_len = %lld, kv_len = %lld (both must be >= 1)", nm,
                     (long long)rec->qo_len, (long long)rec->kv_len);
  if (rec->qo_len > INT32_MAX || rec->kv_len > INT32_MAX)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "record '%s': %lld x %lld tokens exceed the int32 block sizes of the "
                     "masks format (limit %d)",
                     nm, (long long)rec->qo_len, (long long)rec->kv_len, INT32_MAX);
  if (!rec->q || !rec->k)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "record '%s': q or k is missing", nm);
  return BSA_OK;
}

float bsa__record_scale(const bsa_trace_record *rec) {
  return rec->sm_scale > 0.0f ? rec->sm_scale : 1.0f / sqrtf((float)rec->head_dim);
}

bsa_status bsa_maskgen_params_check(bsa_maskgen_method method, const bsa_maskgen_params *p,
                                    const bsa_trace_record *rec) {
  if (!p) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "params is NULL");
  if (method != BSA_MASKGEN_ORACLE && method != BSA_MASKGEN_POOLED && method != BSA_MASKGEN_KMEANS)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "method = %d is not a method", (int)method);
  if (p->num_threads < 0 || p->num_threads > 1024)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--threads = %d is outside [0, 1024]",
                     p->num_threads);
  const char *nm = rec && rec->name ? rec->name : "";
  if (rec) {
    bsa_status st = bsa__trace_record_check(rec);
    if (st != BSA_OK) return st;
  }
  if (method == BSA_MASKGEN_KMEANS) {
    if (p->select != BSA_MASKGEN_SELECT_NONE && p->select != BSA_MASKGEN_SELECT_TOP_P)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "--%s is not a kmeans option (kmeans selects by --top-p)",
                       p->select == BSA_MASKGEN_SELECT_TOP_K ? "top-k" : "threshold");
    if (!(p->top_p > 0.0 && p->top_p <= 1.0))
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--top-p = %g is outside (0, 1]", p->top_p);
    if (p->q_clusters < 1)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--q-clusters = %lld must be >= 1",
                       (long long)p->q_clusters);
    if (p->k_clusters < 1)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--k-clusters = %lld must be >= 1",
                       (long long)p->k_clusters);
    if (p->iters < 1)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--iters = %d must be >= 1", p->iters);
    if (!(p->min_kc_ratio >= 0.0 && p->min_kc_ratio <= 1.0))
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--min-kc-ratio = %g is outside [0, 1]",
                       p->min_kc_ratio);
    if (p->init != BSA_KMEANS_INIT_PLUSPLUS && p->init != BSA_KMEANS_INIT_RANDOM)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--init = %d is not kmeans++ or random",
                       (int)p->init);
    if (rec) {
      if (p->q_clusters > rec->qo_len)
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                         "--q-clusters = %lld exceeds the %lld query tokens of record '%s'",
                         (long long)p->q_clusters, (long long)rec->qo_len, nm);
      if (p->k_clusters > rec->kv_len)
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                         "--k-clusters = %lld exceeds the %lld key tokens of record '%s'",
                         (long long)p->k_clusters, (long long)rec->kv_len, nm);
      if (rec->causal)
        return bsa__fail(NULL, BSA_ERR_UNSUPPORTED,
                         "record '%s' is causal: kmeans permutes tokens, and causal "
                         "masking in token order cannot be expressed on permuted variable "
                         "blocks (use oracle or pooled for causal records)",
                         nm);
    }
    return BSA_OK;
  }
  /* oracle, pooled */
  if (p->block_q < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--block-q = %lld must be >= 1",
                     (long long)p->block_q);
  if (p->block_k < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--block-k = %lld must be >= 1",
                     (long long)p->block_k);
  switch (p->select) {
    case BSA_MASKGEN_SELECT_TOP_P:
      if (!(p->top_p > 0.0 && p->top_p <= 1.0))
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--top-p = %g is outside (0, 1]", p->top_p);
      break;
    case BSA_MASKGEN_SELECT_TOP_K:
      if (p->top_k < 1)
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--top-k = %lld must be >= 1",
                         (long long)p->top_k);
      break;
    case BSA_MASKGEN_SELECT_THRESHOLD:
      if (!(p->threshold >= 0.0 && p->threshold <= 1.0))
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--threshold = %g is outside [0, 1]",
                         p->threshold);
      break;
    default:
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "%s needs a selection rule: one of --top-p, --top-k, --threshold",
                       bsa_maskgen_method_name(method));
  }
  if (p->sink_blocks < 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--sink-blocks = %lld must be >= 0",
                     (long long)p->sink_blocks);
  if (p->local_blocks < 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--local-blocks = %lld must be >= 0",
                     (long long)p->local_blocks);
  return BSA_OK;
}

/* 1 when v prints exactly with 15 significant digits (so 0.9 is written as
 * 0.9, not 0.90000000000000002). */
static int exact_at_15(double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.15g", v);
  return strtod(buf, NULL) == v;
}

char *bsa_maskgen_params_json(bsa_maskgen_method method, const bsa_maskgen_params *p) {
  json_t *o = json_object();
  if (!o) return NULL;
  json_object_set_new(o, "method", json_string(bsa_maskgen_method_name(method)));
  if (method == BSA_MASKGEN_KMEANS) {
    json_object_set_new(o, "q_clusters", json_integer(p->q_clusters));
    json_object_set_new(o, "k_clusters", json_integer(p->k_clusters));
    json_object_set_new(o, "iters", json_integer(p->iters));
    json_object_set_new(o, "top_p", json_real(p->top_p));
    json_object_set_new(o, "min_kc_ratio", json_real(p->min_kc_ratio));
    json_object_set_new(o, "seed", json_integer((json_int_t)p->seed));
    json_object_set_new(o, "init",
                        json_string(p->init == BSA_KMEANS_INIT_RANDOM ? "random" : "kmeans++"));
  } else {
    json_object_set_new(o, "block_q", json_integer(p->block_q));
    json_object_set_new(o, "block_k", json_integer(p->block_k));
    json_object_set_new(o, "select", json_string(select_name(p->select)));
    if (p->select == BSA_MASKGEN_SELECT_TOP_P)
      json_object_set_new(o, "top_p", json_real(p->top_p));
    else if (p->select == BSA_MASKGEN_SELECT_TOP_K)
      json_object_set_new(o, "top_k", json_integer(p->top_k));
    else if (p->select == BSA_MASKGEN_SELECT_THRESHOLD)
      json_object_set_new(o, "threshold", json_real(p->threshold));
    json_object_set_new(o, "sink_blocks", json_integer(p->sink_blocks));
    json_object_set_new(o, "local_blocks", json_integer(p->local_blocks));
  }
  /* Shortest exact form: 15 digits when every real survives it, else 17. */
  const int prec =
      exact_at_15(p->top_p) && exact_at_15(p->min_kc_ratio) && exact_at_15(p->threshold) ? 15 : 17;
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(prec));
  json_decref(o);
  return s;
}

bsa_status bsa_maskgen_file_sha256(const char *path, char hex[65]) {
  FILE *f = path ? fopen(path, "rb") : NULL;
  if (!f)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot open for reading: %s", path ? path : "(null)",
                     strerror(errno));
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char buf[1 << 16], dig[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(md, buf, n) == 1;
  int rd_err = ferror(f);
  fclose(f);
  ok = ok && !rd_err && EVP_DigestFinal_ex(md, dig, &len) == 1 && len == 32;
  EVP_MD_CTX_free(md);
  if (!ok) return bsa__fail(NULL, BSA_ERR_IO, "%s: reading for SHA-256 failed", path);
  for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dig[i]);
  return BSA_OK;
}

/* ---- worker pool ------------------------------------------------------- */

int bsa__gen_threads(int32_t n) {
  if (n > 0) return n;
  long c = sysconf(_SC_NPROCESSORS_ONLN);
  return c > 0 ? (int)c : 1;
}

typedef struct pool {
  bsa__job_fn fn;
  void *arg;
  int64_t njobs;
  int64_t next; /* next job to hand out (atomic) */
  int failed;   /* atomic flag: stop handing out */
  pthread_mutex_t lock;
  bsa_status status; /* first failure, under lock */
} pool;

typedef struct worker {
  pool *p;
  int thread;
} worker;

static void *pool_main(void *a) {
  worker *w = a;
  pool *p = w->p;
  for (;;) {
    if (__atomic_load_n(&p->failed, __ATOMIC_ACQUIRE)) break;
    int64_t job = __atomic_fetch_add(&p->next, 1, __ATOMIC_ACQ_REL);
    if (job >= p->njobs) break;
    bsa_status st = p->fn(p->arg, job, w->thread);
    if (st != BSA_OK) {
      pthread_mutex_lock(&p->lock);
      if (p->status == BSA_OK) p->status = st;
      pthread_mutex_unlock(&p->lock);
      __atomic_store_n(&p->failed, 1, __ATOMIC_RELEASE);
    }
  }
  return NULL;
}

bsa_status bsa__gen_parallel(int nthreads, int64_t njobs, bsa__job_fn fn, void *arg) {
  if (njobs <= 0) return BSA_OK;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > njobs) nthreads = (int)njobs;
  pool p = {fn, arg, njobs, 0, 0, PTHREAD_MUTEX_INITIALIZER, BSA_OK};
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#endif
  pthread_t th[64];
  worker ws[64];
  if (nthreads > 64) nthreads = 64;
  int started = 0;
  for (int t = 1; t < nthreads; t++) {
    ws[t].p = &p;
    ws[t].thread = t;
    if (pthread_create(&th[t], NULL, pool_main, &ws[t]) != 0) break;
    started = t;
  }
  ws[0].p = &p;
  ws[0].thread = 0;
  pool_main(&ws[0]); /* the caller works too */
  for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
  openblas_set_num_threads(blas_threads);
#endif
  pthread_mutex_destroy(&p.lock);
  return p.status;
}

/* ---- mask records ------------------------------------------------------ */

bsa_mask_record *bsa__mask_record_new(const char *name, int32_t hkv, int64_t sq, int64_t sk,
                                      int64_t mb, int64_t nb, int with_perm) {
  bsa_mask_record *m = calloc(1, sizeof *m);
  if (!m) goto oom;
  m->name = strdup(name ? name : "");
  m->num_kv_heads = hkv;
  m->qo_len = sq;
  m->kv_len = sk;
  m->num_block_rows = mb;
  m->num_block_cols = nb;
  size_t cells = (size_t)hkv * (size_t)mb * (size_t)nb;
  m->block_mask_map = calloc(cells ? cells : 1, 1);
  m->block_scores = calloc(cells ? cells : 1, sizeof(float));
  m->block_row_sz = calloc((size_t)hkv * (size_t)mb, sizeof(int32_t));
  m->block_col_sz = calloc((size_t)hkv * (size_t)nb, sizeof(int32_t));
  m->density = NAN;
  m->recall = NAN;
  if (!m->name || !m->block_mask_map || !m->block_scores || !m->block_row_sz || !m->block_col_sz)
    goto oom;
  if (with_perm) {
    m->q_perm = malloc((size_t)hkv * (size_t)sq * sizeof(int32_t));
    m->k_perm = malloc((size_t)hkv * (size_t)sk * sizeof(int32_t));
    if (!m->q_perm || !m->k_perm) goto oom;
  }
  return m;
oom:
  bsa_mask_record_free(m);
  bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory for a mask of %d heads x %lld x %lld blocks", hkv,
            (long long)mb, (long long)nb);
  return NULL;
}

static bsa_status check_perm(const int32_t *perm, int64_t n, int32_t heads, const char *nm,
                             const char *what) {
  uint8_t *seen = malloc((size_t)n);
  if (!seen) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory checking %s", what);
  for (int32_t h = 0; h < heads; h++) {
    memset(seen, 0, (size_t)n);
    const int32_t *p = perm + (size_t)h * (size_t)n;
    for (int64_t t = 0; t < n; t++) {
      if (p[t] < 0 || p[t] >= n || seen[p[t]]) {
        bsa_status st = bsa__fail(NULL, BSA_ERR_FORMAT,
                                  "mask record '%s': %s[%d, %lld] = %d: not a permutation of "
                                  "0..%lld (%s)",
                                  nm, what, h, (long long)t, p[t], (long long)n - 1,
                                  p[t] < 0 || p[t] >= n ? "out of range" : "repeated");
        free(seen);
        return st;
      }
      seen[p[t]] = 1;
    }
  }
  free(seen);
  return BSA_OK;
}

/* The n block sizes of head h in a mask record: none negative, summing to
 * want. */
static bsa_status head_sizes_check(const char *nm, const char *ds, const int32_t *sz, int32_t h,
                                   int64_t n, int64_t want) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; i++) {
    if (sz[i] < 0)
      return bsa__fail(NULL, BSA_ERR_FORMAT, "mask record '%s': %s[%d, %lld] = %d", nm, ds, h,
                       (long long)i, sz[i]);
    s += sz[i];
  }
  if (s != want)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "mask record '%s': %s of head %d sums to %lld, not %lld",
                     nm, ds, h, (long long)s, (long long)want);
  return BSA_OK;
}

bsa_status bsa_mask_record_check(const bsa_mask_record *m, const bsa_trace_record *rec) {
  if (!m) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "mask record is NULL");
  const char *nm = m->name ? m->name : "(unnamed)";
  if (m->num_kv_heads < 1 || m->num_block_rows < 1 || m->num_block_cols < 1 || m->qo_len < 1 ||
      m->kv_len < 1)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "mask record '%s': empty shape (heads %d, %lld x %lld blocks, %lld x %lld "
                     "tokens)",
                     nm, m->num_kv_heads, (long long)m->num_block_rows,
                     (long long)m->num_block_cols, (long long)m->qo_len, (long long)m->kv_len);
  if (!m->block_mask_map || !m->block_row_sz || !m->block_col_sz)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "mask record '%s': block_mask_map, block_row_sz or block_col_sz missing", nm);
  if (rec) {
    if (rec->num_kv_heads != m->num_kv_heads)
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "mask record '%s': block_mask_map has %d heads but the trace record "
                       "has %d kv heads",
                       nm, m->num_kv_heads, rec->num_kv_heads);
    if (rec->qo_len != m->qo_len || rec->kv_len != m->kv_len)
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "mask record '%s': made for %lld x %lld tokens but the trace record has "
                       "%lld x %lld",
                       nm, (long long)m->qo_len, (long long)m->kv_len, (long long)rec->qo_len,
                       (long long)rec->kv_len);
  }
  int64_t mb = m->num_block_rows, nb = m->num_block_cols;
  for (int32_t h = 0; h < m->num_kv_heads; h++) {
    bsa_status st =
        head_sizes_check(nm, "block_row_sz", m->block_row_sz + (size_t)h * mb, h, mb, m->qo_len);
    if (st == BSA_OK)
      st = head_sizes_check(nm, "block_col_sz", m->block_col_sz + (size_t)h * nb, h, nb, m->kv_len);
    if (st != BSA_OK) return st;
  }
  size_t cells = (size_t)m->num_kv_heads * (size_t)mb * (size_t)nb;
  for (size_t c = 0; c < cells; c++)
    if (m->block_mask_map[c] > 1)
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "mask record '%s': block_mask_map entry %zu = %d "
                       "(must be 0 or 1)",
                       nm, c, m->block_mask_map[c]);
  bsa_status st = BSA_OK;
  if (m->q_perm) st = check_perm(m->q_perm, m->qo_len, m->num_kv_heads, nm, "q_perm");
  if (st == BSA_OK && m->k_perm)
    st = check_perm(m->k_perm, m->kv_len, m->num_kv_heads, nm, "k_perm");
  return st;
}

void bsa_mask_var_desc(const bsa_mask_record *m, bsa_var_desc *out) {
  memset(out, 0, sizeof *out);
  out->num_block_rows = m->num_block_rows;
  out->num_block_cols = m->num_block_cols;
  out->block_mask_map = m->block_mask_map;
  out->block_row_sz = m->block_row_sz;
  out->block_col_sz = m->block_col_sz;
}

static int perm_is_identity(const int32_t *perm, int64_t n, int32_t heads) {
  if (!perm) return 1;
  for (int32_t h = 0; h < heads; h++)
    for (int64_t t = 0; t < n; t++)
      if (perm[(size_t)h * n + t] != t) return 0;
  return 1;
}

int bsa_mask_is_permuted(const bsa_mask_record *m) {
  return !perm_is_identity(m->q_perm, m->qo_len, m->num_kv_heads) ||
         !perm_is_identity(m->k_perm, m->kv_len, m->num_kv_heads);
}

/* dst[h, t, :] = src[h, perm[t], :] for one head of n rows. */
static void gather_rows(float *dst, const float *src, const int32_t *perm, int64_t n, int32_t d) {
  for (int64_t t = 0; t < n; t++) {
    int64_t from = perm ? perm[t] : t;
    memcpy(dst + (size_t)t * d, src + (size_t)from * d, sizeof(float) * (size_t)d);
  }
}

bsa_status bsa_mask_permute_qkv(const bsa_trace_record *rec, const bsa_mask_record *m, float **q,
                                float **k, float **v) {
  *q = *k = NULL;
  if (v) *v = NULL;
  bsa_status st = bsa__trace_record_check(rec);
  if (st == BSA_OK) st = bsa_mask_record_check(m, rec);
  if (st != BSA_OK) return st;
  int32_t hq = rec->num_qo_heads, hkv = rec->num_kv_heads, g = hq / hkv, d = rec->head_dim;
  int64_t sq = rec->qo_len, sk = rec->kv_len;
  float *nq = malloc(sizeof(float) * (size_t)hq * (size_t)sq * (size_t)d);
  float *nk = malloc(sizeof(float) * (size_t)hkv * (size_t)sk * (size_t)d);
  float *nv = rec->v && v ? malloc(sizeof(float) * (size_t)hkv * (size_t)sk * (size_t)d) : NULL;
  if (!nq || !nk || (rec->v && v && !nv)) {
    free(nq);
    free(nk);
    free(nv);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory permuting q/k/v of record '%s'",
                     rec->name ? rec->name : "");
  }
  for (int32_t h = 0; h < hq; h++) {
    const int32_t *pp = m->q_perm ? m->q_perm + (size_t)(h / g) * sq : NULL;
    gather_rows(nq + (size_t)h * sq * d, rec->q + (size_t)h * sq * d, pp, sq, d);
  }
  for (int32_t h = 0; h < hkv; h++) {
    const int32_t *pp = m->k_perm ? m->k_perm + (size_t)h * sk : NULL;
    gather_rows(nk + (size_t)h * sk * d, rec->k + (size_t)h * sk * d, pp, sk, d);
    if (nv) gather_rows(nv + (size_t)h * sk * d, rec->v + (size_t)h * sk * d, pp, sk, d);
  }
  *q = nq;
  *k = nk;
  if (v) *v = nv;
  return BSA_OK;
}

void bsa_mask_unpermute_o(const bsa_mask_record *m, int32_t hq, int32_t d, const float *o_perm,
                          float *o) {
  int64_t sq = m->qo_len;
  int32_t g = hq / m->num_kv_heads;
  for (int32_t h = 0; h < hq; h++) {
    const int32_t *pp = m->q_perm ? m->q_perm + (size_t)(h / g) * sq : NULL;
    const float *src = o_perm + (size_t)h * sq * d;
    float *dst = o + (size_t)h * sq * d;
    for (int64_t t = 0; t < sq; t++) {
      int64_t to = pp ? pp[t] : t;
      memcpy(dst + (size_t)to * d, src + (size_t)t * d, sizeof(float) * (size_t)d);
    }
  }
}

int64_t bsa__visible_pairs(int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t off,
                           int causal) {
  if (r1 <= r0 || j1 <= j0) return 0;
  int64_t w = j1 - j0;
  if (!causal) return (r1 - r0) * w;
  /* Row i sees clamp(i + off + 1 - j0, 0, w) keys of the block: sum the
   * clamped line x = lo..hi in closed form. */
  int64_t lo = r0 + off + 1 - j0, hi = r1 - 1 + off + 1 - j0;
  int64_t s = 0;
  int64_t a = lo > 1 ? lo : 1, b = hi < w - 1 ? hi : w - 1;
  if (a <= b) s += (a + b) * (b - a + 1) / 2;
  int64_t c = lo > w ? lo : w;
  if (c <= hi) s += w * (hi - c + 1);
  return s;
}

bsa_status bsa_mask_density_get(const bsa_mask_record *m, int32_t head, int32_t causal,
                                bsa_mask_density *out) {
  if (!m || !out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "mask or out is NULL");
  if (head < -1 || head >= m->num_kv_heads)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "head = %d is outside [-1, %d)", head,
                     m->num_kv_heads);
  if (causal && bsa_mask_is_permuted(m))
    return bsa__fail(NULL, BSA_ERR_UNSUPPORTED,
                     "mask record '%s' permutes tokens; its causal density is undefined on "
                     "variable blocks",
                     m->name ? m->name : "");
  int64_t mb = m->num_block_rows, nb = m->num_block_cols, sq = m->qo_len, sk = m->kv_len;
  int64_t off = sk - sq;
  int32_t h0 = head < 0 ? 0 : head, h1 = head < 0 ? m->num_kv_heads : head + 1;
  double kept_full = 0, kept_vis = 0, kept_blocks = 0, tot_vis = 0;
  for (int32_t h = h0; h < h1; h++) {
    const int32_t *rs = m->block_row_sz + (size_t)h * mb;
    const int32_t *cs = m->block_col_sz + (size_t)h * nb;
    const uint8_t *map = m->block_mask_map + (size_t)h * mb * nb;
    int64_t r0 = 0;
    for (int64_t i = 0; i < mb; i++) {
      int64_t j0 = 0;
      for (int64_t j = 0; j < nb; j++) {
        if (map[i * nb + j]) {
          kept_blocks += 1;
          kept_full += (double)rs[i] * (double)cs[j];
          if (causal)
            kept_vis += (double)bsa__visible_pairs(r0, r0 + rs[i], j0, j0 + cs[j], off, 1);
        }
        j0 += cs[j];
      }
      r0 += rs[i];
    }
    if (causal) tot_vis += (double)bsa__visible_pairs(0, sq, 0, sk, off, 1);
  }
  double nh = (double)(h1 - h0);
  out->full = kept_full / (nh * (double)sq * (double)sk);
  out->blocks = kept_blocks / (nh * (double)mb * (double)nb);
  out->causal = causal ? (tot_vis > 0 ? kept_vis / tot_vis : 0.0) : NAN;
  out->compute = causal ? out->causal : out->full;
  return BSA_OK;
}

/* ---- selection --------------------------------------------------------- */

typedef struct order_ctx {
  const float *scores;
} order_ctx;

/* Descending score, then ascending index: a total order, so the selection
 * does not depend on the sort algorithm. */
static void sort_desc(int64_t *idx, int64_t n, const float *s) {
  /* Insertion sort for short rows, a merge sort otherwise (no qsort_r in C11). */
  if (n <= 32) {
    for (int64_t a = 1; a < n; a++) {
      int64_t v = idx[a], b = a;
      while (b > 0 && (s[idx[b - 1]] < s[v] || (s[idx[b - 1]] == s[v] && idx[b - 1] > v))) {
        idx[b] = idx[b - 1];
        b--;
      }
      idx[b] = v;
    }
    return;
  }
  int64_t h = n / 2;
  sort_desc(idx, h, s);
  sort_desc(idx + h, n - h, s);
  int64_t *tmp = malloc(sizeof(int64_t) * (size_t)n);
  if (!tmp) { /* fall back to the (slow, allocation-free) insertion sort */
    for (int64_t a = 1; a < n; a++) {
      int64_t v = idx[a], b = a;
      while (b > 0 && (s[idx[b - 1]] < s[v] || (s[idx[b - 1]] == s[v] && idx[b - 1] > v))) {
        idx[b] = idx[b - 1];
        b--;
      }
      idx[b] = v;
    }
    return;
  }
  int64_t i = 0, j = h, o = 0;
  while (i < h && j < n) {
    int64_t x = idx[i], y = idx[j];
    int take_y = s[y] > s[x] || (s[y] == s[x] && y < x);
    tmp[o++] = take_y ? idx[j++] : idx[i++];
  }
  while (i < h) tmp[o++] = idx[i++];
  while (j < n) tmp[o++] = idx[j++];
  memcpy(idx, tmp, sizeof(int64_t) * (size_t)n);
  free(tmp);
}

void bsa__select_row(const float *scores, const uint8_t *eligible, const uint8_t *forced,
                     int64_t nb, bsa_maskgen_select rule, double top_p, int64_t top_k,
                     double threshold, int64_t min_keep, int64_t *order, uint8_t *keep) {
  int64_t n = 0;
  double forced_mass = 0.0;
  for (int64_t j = 0; j < nb; j++) {
    keep[j] = 0;
    if (!eligible[j]) continue;
    if (forced && forced[j]) {
      keep[j] = 1;
      forced_mass += scores[j];
    } else {
      order[n++] = j;
    }
  }
  sort_desc(order, n, scores);
  int64_t taken = 0;
  if (rule == BSA_MASKGEN_SELECT_TOP_P) {
    /* The total is summed in the order the prefix is taken, so p = 1 takes
     * every block with mass and no more. */
    double total = forced_mass;
    for (int64_t a = 0; a < n; a++) total += scores[order[a]];
    double target = top_p * total, cum = forced_mass;
    for (; taken < n; taken++) {
      float s = scores[order[taken]];
      if (cum >= target || s <= 0.0f) break;
      keep[order[taken]] = 1;
      cum += s;
    }
  } else if (rule == BSA_MASKGEN_SELECT_TOP_K) {
    for (; taken < n && taken < top_k; taken++) keep[order[taken]] = 1;
  } else if (rule == BSA_MASKGEN_SELECT_THRESHOLD) {
    for (; taken < n && scores[order[taken]] >= threshold; taken++) keep[order[taken]] = 1;
  }
  for (int64_t a = taken; a < n && a < min_keep; a++) keep[order[a]] = 1;
}
