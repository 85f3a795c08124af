/*
 * maskgen/eval.c - density, attention recall and output error of a mask,
 * computed through libbsa.
 *
 * The sparse side runs a variable-block plan on q/k/v permuted by the
 * mask's q_perm / k_perm; the dense side runs a dense plan on the original
 * q/k/v; both return LSE.  Per query row and head:
 *     recall = exp(lse_sparse - lse_dense)
 * is exactly the share of the row's softmax mass that the mask keeps
 * (sum over kept keys of e^s / sum over all keys of e^s), and the outputs,
 * put back in token order, give the output error.
 *
 * Sampling (--sample-rows) takes runs of consecutive query tokens.  Without
 * causal masking the sampled rows of each head are simply the sub-problem
 * "these queries, all keys" (the row block sizes count the sampled rows of
 * each block).  With causal masking (never permuted) each run [a, b) is its
 * own problem with keys [0, b + Sk - Sq): libbsa's causal offset
 * kv_len - qo_len is then exactly a + Sk - Sq, the run's true offset.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen_internal.h"

/* Sampled runs are RUN_LEN rows long; at most GROUP_ROWS query rows go into
 * one libbsa problem (bounded memory, progress on long records). */
enum { RUN_LEN = 64, GROUP_ROWS = 2048 };

typedef struct acc {
  double d2, r2, d1, r1, dot, s2; /* sums for the output error */
  double rec_sum, rec_min;
  int64_t rec_n;
} acc;

static void acc_init(acc *a) {
  memset(a, 0, sizeof *a);
  a->rec_min = INFINITY;
}

static void acc_add(acc *to, const acc *a) {
  to->d2 += a->d2, to->r2 += a->r2, to->d1 += a->d1, to->r1 += a->r1;
  to->dot += a->dot, to->s2 += a->s2;
  to->rec_sum += a->rec_sum, to->rec_n += a->rec_n;
  if (a->rec_min < to->rec_min) to->rec_min = a->rec_min;
}

static void acc_row(acc *a, const float *s, const float *d, int64_t D, float lse_s, float lse_d) {
  for (int64_t x = 0; x < D; x++) {
    double sv = s[x], dv = d[x], e = sv - dv;
    a->d2 += e * e;
    a->r2 += dv * dv;
    a->d1 += fabs(e);
    a->r1 += fabs(dv);
    a->dot += sv * dv;
    a->s2 += sv * sv;
  }
  if (isfinite(lse_d)) { /* rows that see no key at all carry no mass */
    double r = isfinite(lse_s) ? exp((double)lse_s - (double)lse_d) : 0.0;
    if (r > 1.0) r = 1.0; /* the two LSEs round differently in float32 */
    a->rec_sum += r;
    a->rec_n++;
    if (r < a->rec_min) a->rec_min = r;
  }
}

static void acc_finish(const acc *a, int has_v, bsa_eval_metrics *m) {
  m->recall = a->rec_n ? a->rec_sum / (double)a->rec_n : NAN;
  m->recall_min = a->rec_n ? a->rec_min : NAN;
  if (!has_v) {
    m->rel_l2 = m->rel_l1 = m->cosine = NAN;
    return;
  }
  m->rel_l2 = a->r2 > 0 ? sqrt(a->d2 / a->r2) : (a->d2 > 0 ? INFINITY : 0.0);
  m->rel_l1 = a->r1 > 0 ? a->d1 / a->r1 : (a->d1 > 0 ? INFINITY : 0.0);
  m->cosine = a->r2 > 0 && a->s2 > 0 ? a->dot / sqrt(a->r2 * a->s2)
                                     : (a->r2 == 0 && a->s2 == 0 ? 1.0 : 0.0);
}

/* One dense + one sparse run of the same shape. */
typedef struct problem {
  int64_t qo_len, kv_len;
  const float *q_d, *k_d, *v_d; /* dense inputs (host) */
  const float *q_s, *k_s, *v_s; /* sparse inputs (host, permuted) */
  bsa_var_desc var;
  float *o_d, *o_s;     /* [Hq, qo_len, D] (host) */
  float *lse_d, *lse_s; /* [qo_len, Hq] (host) */
} problem;

static bsa_status run_plan(bsa_ctx *ctx, const bsa_attn_params *ap, const bsa_var_desc *var,
                           const float *q, const float *k, const float *v, float *o, float *lse) {
  bsa_plan *plan = NULL;
  bsa_status st =
      var ? bsa_plan_create_var(ctx, ap, var, &plan) : bsa_plan_create_dense(ctx, ap, &plan);
  if (st != BSA_OK) return st;
  size_t nq = (size_t)ap->num_qo_heads * (size_t)ap->qo_len * (size_t)ap->head_dim;
  size_t nk = (size_t)ap->num_kv_heads * (size_t)ap->kv_len * (size_t)ap->head_dim;
  size_t nl = (size_t)ap->num_qo_heads * (size_t)ap->qo_len;
  if (bsa_ctx_device(ctx) == BSA_DEVICE_CPU) {
    st = bsa_plan_run(plan, q, k, v, o, lse);
    bsa_plan_destroy(plan);
    return st;
  }
  /* Another device: copies in and out. */
  void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL, *dl = NULL;
  if ((st = bsa_ctx_alloc(ctx, nq * 4, &dq)) == BSA_OK &&
      (st = bsa_ctx_alloc(ctx, nk * 4, &dk)) == BSA_OK &&
      (st = bsa_ctx_alloc(ctx, nk * 4, &dv)) == BSA_OK &&
      (st = bsa_ctx_alloc(ctx, nq * 4, &dout)) == BSA_OK &&
      (st = bsa_ctx_alloc(ctx, nl * 4, &dl)) == BSA_OK &&
      (st = bsa_ctx_copy_to_device(ctx, dq, q, nq * 4)) == BSA_OK &&
      (st = bsa_ctx_copy_to_device(ctx, dk, k, nk * 4)) == BSA_OK &&
      (st = bsa_ctx_copy_to_device(ctx, dv, v, nk * 4)) == BSA_OK &&
      (st = bsa_plan_run(plan, dq, dk, dv, dout, dl)) == BSA_OK &&
      (st = bsa_ctx_copy_to_host(ctx, o, dout, nq * 4)) == BSA_OK)
    st = bsa_ctx_copy_to_host(ctx, lse, dl, nl * 4);
  bsa_ctx_free(ctx, dq), bsa_ctx_free(ctx, dk), bsa_ctx_free(ctx, dv);
  bsa_ctx_free(ctx, dout), bsa_ctx_free(ctx, dl);
  bsa_plan_destroy(plan);
  return st;
}

static bsa_status run_problem(bsa_ctx *ctx, const bsa_trace_record *rec, int causal, problem *pb) {
  bsa_attn_params ap;
  memset(&ap, 0, sizeof ap);
  ap.num_qo_heads = rec->num_qo_heads;
  ap.num_kv_heads = rec->num_kv_heads;
  ap.head_dim = rec->head_dim;
  ap.qo_len = pb->qo_len;
  ap.kv_len = pb->kv_len;
  ap.layout = BSA_LAYOUT_HND;
  ap.sm_scale = rec->sm_scale;
  ap.causal = causal;
  bsa_status st = run_plan(ctx, &ap, NULL, pb->q_d, pb->k_d, pb->v_d, pb->o_d, pb->lse_d);
  if (st == BSA_OK)
    st = run_plan(ctx, &ap, &pb->var, pb->q_s, pb->k_s, pb->v_s, pb->o_s, pb->lse_s);
  return st;
}

/* Runs of consecutive rows: one per stratum.  starts/lens [n]. */
static int64_t sample_runs(int64_t sq, int64_t want, uint64_t seed, int64_t **starts,
                           int64_t **lens) {
  int64_t n = (want + RUN_LEN - 1) / RUN_LEN;
  *starts = malloc(sizeof(int64_t) * (size_t)n);
  *lens = malloc(sizeof(int64_t) * (size_t)n);
  if (!*starts || !*lens) return -1;
  uint64_t rng = seed ^ 0x5851F42D4C957F2Dull;
  for (int64_t c = 0; c < n; c++) {
    int64_t lo = (int64_t)((double)sq * (double)c / (double)n);
    int64_t hi = (int64_t)((double)sq * (double)(c + 1) / (double)n);
    int64_t len = hi - lo < RUN_LEN ? hi - lo : RUN_LEN;
    (*starts)[c] = lo + (int64_t)bsa__rng_below(&rng, (uint64_t)(hi - lo - len + 1));
    (*lens)[c] = len;
  }
  return n;
}

typedef struct evalw {
  const bsa_trace_record *rec;
  const bsa_mask_record *m;
  int32_t hq, hkv, group;
  int64_t D, sq, sk, mb, nb;
  acc *heads;          /* [Hkv] */
  const float *zero_v; /* when the trace has no v */
} evalw;

static const float *vsrc(const evalw *w) { return w->rec->v ? w->rec->v : w->zero_v; }

/* Without causal masking: the given runs of rows against all keys, taken in
 * groups of at most GROUP_ROWS rows, one problem each. */
static bsa_status eval_noncausal(bsa_ctx *ctx, evalw *w, const int64_t *starts, const int64_t *lens,
                                 int64_t nruns, const bsa_eval_options *o) {
  const bsa_trace_record *rec = w->rec;
  const bsa_mask_record *m = w->m;
  int64_t D = w->D, sq = w->sq;
  /* Split long runs so that every piece fits a group. */
  int64_t maxn = 0, total = 0;
  for (int64_t c = 0; c < nruns; c++) total += lens[c];
  maxn = total < GROUP_ROWS ? total : GROUP_ROWS;
  size_t qsz = (size_t)w->hq * (size_t)maxn * (size_t)D;
  bsa_status st = BSA_OK;
  float *qp = NULL, *kp = NULL, *vp = NULL, *qd = NULL, *qs = NULL;
  int32_t *row_sz = NULL, *ord = NULL;
  int64_t *dpos = NULL;
  problem pb;
  memset(&pb, 0, sizeof pb);
  pb.o_d = malloc(sizeof(float) * qsz);
  pb.o_s = malloc(sizeof(float) * qsz);
  pb.lse_d = malloc(sizeof(float) * (size_t)w->hq * (size_t)maxn);
  pb.lse_s = malloc(sizeof(float) * (size_t)w->hq * (size_t)maxn);
  qd = malloc(sizeof(float) * qsz);
  qs = malloc(sizeof(float) * qsz);
  row_sz = malloc(sizeof(int32_t) * (size_t)(w->hkv * w->mb));
  ord = malloc(sizeof(int32_t) * (size_t)(w->hkv * maxn)); /* sparse row -> token */
  dpos = malloc(sizeof(int64_t) * (size_t)sq);             /* token -> dense row */
  if (!pb.o_d || !pb.o_s || !pb.lse_d || !pb.lse_s || !qd || !qs || !row_sz || !ord || !dpos)
    goto oom;
  st = bsa_mask_permute_qkv(rec, m, &qp, &kp, rec->v ? &vp : NULL);
  if (st != BSA_OK) goto done;
  free(qp); /* queries are gathered per group below */
  qp = NULL;
  bsa_mask_var_desc(m, &pb.var);
  pb.var.block_row_sz = row_sz;
  pb.kv_len = w->sk;
  pb.q_d = qd;
  pb.k_d = rec->k;
  pb.v_d = vsrc(w);
  pb.q_s = qs;
  pb.k_s = kp;
  pb.v_s = vp ? vp : w->zero_v;
  int64_t c = 0, off_in_run = 0, done_rows = 0;
  while (c < nruns) {
    /* The group: rows [starts[c] + off_in_run, ...) across runs, up to maxn. */
    for (int64_t t = 0; t < sq; t++) dpos[t] = -1;
    int64_t n = 0;
    while (c < nruns && n < maxn) {
      int64_t a = starts[c] + off_in_run, take = lens[c] - off_in_run;
      if (take > maxn - n) take = maxn - n;
      for (int64_t t = a; t < a + take; t++) dpos[t] = n++;
      off_in_run += take;
      if (off_in_run == lens[c]) c++, off_in_run = 0;
    }
    /* Sparse rows of head h: the group's tokens in permuted order. */
    for (int32_t h = 0; h < w->hkv; h++) {
      const int32_t *pp = m->q_perm ? m->q_perm + (size_t)h * sq : NULL;
      const int32_t *rs = m->block_row_sz + (size_t)h * w->mb;
      int64_t t = 0, k = 0;
      for (int64_t i = 0; i < w->mb; i++) {
        int32_t cnt = 0;
        for (int64_t e = t + rs[i]; t < e; t++) {
          int32_t tok = pp ? pp[t] : (int32_t)t;
          if (dpos[tok] >= 0) ord[(size_t)h * n + k++] = tok, cnt++;
        }
        row_sz[(size_t)h * w->mb + i] = cnt;
      }
    }
    for (int32_t hh = 0; hh < w->hq; hh++) {
      int32_t h = hh / w->group;
      const float *src = rec->q + (size_t)hh * sq * D;
      for (int64_t t = 0; t < sq; t++)
        if (dpos[t] >= 0)
          memcpy(qd + ((size_t)hh * n + dpos[t]) * D, src + (size_t)t * D, sizeof(float) * D);
      for (int64_t k = 0; k < n; k++)
        memcpy(qs + ((size_t)hh * n + k) * D, src + (size_t)ord[(size_t)h * n + k] * D,
               sizeof(float) * D);
    }
    pb.qo_len = n;
    size_t osz = (size_t)w->hq * (size_t)n * (size_t)D;
    for (size_t x = 0; x < osz; x++) pb.o_d[x] = pb.o_s[x] = NAN; /* poison */
    st = run_problem(ctx, rec, 0, &pb);
    if (st != BSA_OK) goto done;
    for (int32_t hh = 0; hh < w->hq; hh++) {
      int32_t h = hh / w->group;
      for (int64_t k = 0; k < n; k++) {
        int64_t dr = dpos[ord[(size_t)h * n + k]];
        acc_row(&w->heads[h], pb.o_s + ((size_t)hh * n + k) * D, pb.o_d + ((size_t)hh * n + dr) * D,
                D, pb.lse_s[k * w->hq + hh], pb.lse_d[dr * w->hq + hh]);
      }
    }
    done_rows += n;
    if (o && o->progress) o->progress(o->progress_user, (double)done_rows / (double)total);
  }
  goto done;
oom:
  st = bsa__fail(NULL, BSA_ERR_NOMEM, "eval: out of memory for record '%s'",
                 rec->name ? rec->name : "");
done:
  free(qp), free(kp), free(vp), free(qd), free(qs), free(row_sz), free(ord), free(dpos);
  free(pb.o_d), free(pb.o_s), free(pb.lse_d), free(pb.lse_s);
  return st;
}

/* Causal (never permuted): each run [a, b) against keys [0, b + Sk - Sq). */
static bsa_status eval_causal(bsa_ctx *ctx, evalw *w, const int64_t *starts, const int64_t *lens,
                              int64_t nruns, const bsa_eval_options *o) {
  const bsa_trace_record *rec = w->rec;
  const bsa_mask_record *m = w->m;
  int64_t D = w->D, sq = w->sq, sk = w->sk, off = sk - sq;
  int64_t maxlen = 0;
  for (int64_t c = 0; c < nruns; c++) maxlen = lens[c] > maxlen ? lens[c] : maxlen;
  if (maxlen > GROUP_ROWS) maxlen = GROUP_ROWS;
  size_t qsz = (size_t)w->hq * (size_t)maxlen * (size_t)D;
  size_t ksz = (size_t)w->hkv * (size_t)sk * (size_t)D;
  int whole = nruns == 1 && starts[0] == 0 && lens[0] == sq && sq <= GROUP_ROWS;
  bsa_status st = BSA_OK;
  problem pb;
  memset(&pb, 0, sizeof pb);
  float *qc = whole ? NULL : malloc(sizeof(float) * qsz);
  float *kc = whole ? NULL : malloc(sizeof(float) * ksz);
  float *vc = whole ? NULL : malloc(sizeof(float) * ksz);
  int32_t *row_sz = malloc(sizeof(int32_t) * (size_t)(w->hkv * w->mb));
  int32_t *col_sz = malloc(sizeof(int32_t) * (size_t)(w->hkv * w->nb));
  pb.o_d = malloc(sizeof(float) * qsz);
  pb.o_s = malloc(sizeof(float) * qsz);
  pb.lse_d = malloc(sizeof(float) * (size_t)w->hq * (size_t)maxlen);
  pb.lse_s = malloc(sizeof(float) * (size_t)w->hq * (size_t)maxlen);
  if ((!whole && (!qc || !kc || !vc)) || !row_sz || !col_sz || !pb.o_d || !pb.o_s || !pb.lse_d ||
      !pb.lse_s) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "eval: out of memory for record '%s'",
                   rec->name ? rec->name : "");
    goto done;
  }
  int64_t total = 0, done_rows = 0;
  for (int64_t c = 0; c < nruns; c++) total += lens[c];
  /* Runs longer than a group are done in pieces, each its own problem. */
  int64_t c = 0, next = nruns > 0 ? starts[0] : 0;
  while (c < nruns && st == BSA_OK) {
    /* This piece is [a, b); then move on (before any continue). */
    int64_t a = next, run_end = starts[c] + lens[c];
    int64_t b = a + GROUP_ROWS < run_end ? a + GROUP_ROWS : run_end;
    if (b == run_end) {
      c++;
      next = c < nruns ? starts[c] : 0;
    } else {
      next = b;
    }
    int64_t kvl = b + off;
    done_rows += b - a;
    if (kvl > sk) kvl = sk;
    if (kvl <= 0) continue; /* no row of the piece sees a key: nothing to measure */
    int64_t n = b - a;
    /* The run's slice of each head's blocks. */
    for (int32_t h = 0; h < w->hkv; h++) {
      int64_t r0 = 0;
      for (int64_t i = 0; i < w->mb; i++) {
        int64_t r1 = r0 + m->block_row_sz[(size_t)h * w->mb + i];
        int64_t lo = r0 > a ? r0 : a, hi = r1 < b ? r1 : b;
        row_sz[(size_t)h * w->mb + i] = (int32_t)(hi > lo ? hi - lo : 0);
        r0 = r1;
      }
      int64_t j0 = 0;
      for (int64_t j = 0; j < w->nb; j++) {
        int64_t j1 = j0 + m->block_col_sz[(size_t)h * w->nb + j];
        int64_t hi = j1 < kvl ? j1 : kvl;
        col_sz[(size_t)h * w->nb + j] = (int32_t)(hi > j0 ? hi - j0 : 0);
        j0 = j1;
      }
    }
    if (!whole) {
      for (int32_t hh = 0; hh < w->hq; hh++)
        memcpy(qc + (size_t)hh * n * D, rec->q + ((size_t)hh * sq + a) * D,
               sizeof(float) * (size_t)(n * D));
      for (int32_t h = 0; h < w->hkv; h++) {
        memcpy(kc + (size_t)h * kvl * D, rec->k + (size_t)h * sk * D,
               sizeof(float) * (size_t)(kvl * D));
        memcpy(vc + (size_t)h * kvl * D, vsrc(w) + (size_t)h * sk * D,
               sizeof(float) * (size_t)(kvl * D));
      }
    }
    pb.qo_len = n;
    pb.kv_len = kvl;
    pb.q_d = pb.q_s = whole ? rec->q : qc;
    pb.k_d = pb.k_s = whole ? rec->k : kc;
    pb.v_d = pb.v_s = whole ? vsrc(w) : vc;
    bsa_mask_var_desc(m, &pb.var);
    pb.var.block_row_sz = row_sz;
    pb.var.block_col_sz = col_sz;
    size_t osz = (size_t)w->hq * (size_t)n * (size_t)D;
    for (size_t x = 0; x < osz; x++) pb.o_d[x] = pb.o_s[x] = NAN; /* poison */
    st = run_problem(ctx, rec, 1, &pb);
    if (st != BSA_OK) break;
    for (int32_t hh = 0; hh < w->hq; hh++) {
      int32_t h = hh / w->group;
      for (int64_t r = 0; r < n; r++)
        acc_row(&w->heads[h], pb.o_s + ((size_t)hh * n + r) * D, pb.o_d + ((size_t)hh * n + r) * D,
                D, pb.lse_s[r * w->hq + hh], pb.lse_d[r * w->hq + hh]);
    }
    if (o && o->progress) o->progress(o->progress_user, (double)done_rows / (double)total);
  }
done:
  free(qc), free(kc), free(vc), free(row_sz), free(col_sz);
  free(pb.o_d), free(pb.o_s), free(pb.lse_d), free(pb.lse_s);
  return st;
}

bsa_status bsa_mask_eval(bsa_ctx *ctx, const bsa_trace_record *rec, const bsa_mask_record *m,
                         const bsa_eval_options *o, bsa_eval_result *out) {
  if (!out) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "eval: out is NULL");
  memset(out, 0, sizeof *out);
  if (!ctx) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "eval: ctx is NULL");
  bsa_status st = bsa__trace_record_check(rec);
  if (st == BSA_OK) st = bsa_mask_record_check(m, rec);
  if (st != BSA_OK) return st;
  if (o && o->sample_rows < 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "--sample-rows = %lld must be >= 0",
                     (long long)o->sample_rows);
  int causal = rec->causal != 0;
  if (causal && bsa_mask_is_permuted(m))
    return bsa__fail(NULL, BSA_ERR_UNSUPPORTED,
                     "record '%s' is causal but its mask permutes tokens: causal masking in "
                     "token order cannot be expressed on permuted variable blocks",
                     rec->name ? rec->name : "");
  double t0 = bsa__now_ms();
  evalw w;
  memset(&w, 0, sizeof w);
  w.rec = rec;
  w.m = m;
  w.hq = rec->num_qo_heads;
  w.hkv = rec->num_kv_heads;
  w.group = w.hq / w.hkv;
  w.D = rec->head_dim;
  w.sq = rec->qo_len;
  w.sk = rec->kv_len;
  w.mb = m->num_block_rows;
  w.nb = m->num_block_cols;
  w.heads = malloc(sizeof(acc) * (size_t)w.hkv);
  out->heads = calloc((size_t)w.hkv, sizeof(bsa_eval_metrics));
  float *zv = rec->v ? NULL : calloc((size_t)w.hkv * (size_t)w.sk * (size_t)w.D, sizeof(float));
  w.zero_v = zv;
  int64_t *starts = NULL, *lens = NULL;
  if (!w.heads || !out->heads || (!rec->v && !zv)) {
    st = bsa__fail(NULL, BSA_ERR_NOMEM, "eval: out of memory for record '%s'",
                   rec->name ? rec->name : "");
    goto done;
  }
  for (int32_t h = 0; h < w.hkv; h++) acc_init(&w.heads[h]);
  int sample = o && o->sample_rows > 0 && o->sample_rows < w.sq &&
               (o->sample_rows + RUN_LEN - 1) / RUN_LEN * RUN_LEN < w.sq;
  int64_t nruns = 1, rows = w.sq;
  if (sample) {
    nruns = sample_runs(w.sq, o->sample_rows, o->seed, &starts, &lens);
    if (nruns < 0) st = BSA_ERR_NOMEM;
  } else {
    starts = malloc(sizeof(int64_t));
    lens = malloc(sizeof(int64_t));
    if (!starts || !lens)
      st = BSA_ERR_NOMEM;
    else
      starts[0] = 0, lens[0] = w.sq;
  }
  if (st == BSA_OK && sample) {
    rows = 0;
    for (int64_t c = 0; c < nruns; c++) rows += lens[c];
  }
  if (st != BSA_OK) {
    st = bsa__fail(NULL, st, "eval: out of memory sampling rows");
    goto done;
  }
  st = causal ? eval_causal(ctx, &w, starts, lens, nruns, o)
              : eval_noncausal(ctx, &w, starts, lens, nruns, o);
  if (st != BSA_OK) goto done;
  acc tot;
  acc_init(&tot);
  out->num_heads = w.hkv;
  for (int32_t h = 0; h < w.hkv; h++) {
    bsa_eval_metrics *em = &out->heads[h];
    em->head = h;
    em->rows = rows;
    if ((st = bsa_mask_density_get(m, h, causal, &em->density)) != BSA_OK) goto done;
    acc_finish(&w.heads[h], rec->v != NULL, em);
    acc_add(&tot, &w.heads[h]);
  }
  out->total.head = -1;
  out->total.rows = rows;
  if ((st = bsa_mask_density_get(m, -1, causal, &out->total.density)) != BSA_OK) goto done;
  acc_finish(&tot, rec->v != NULL, &out->total);
  out->rows_evaluated = rows;
  out->sampled = sample;
  out->has_v = rec->v != NULL;
  out->num_runs = nruns;
  out->run_start = starts;
  out->run_len = lens;
  starts = lens = NULL;
  out->time_ms = bsa__now_ms() - t0;
done:
  free(w.heads), free(zv), free(starts), free(lens);
  if (st != BSA_OK) {
    free(out->heads);
    memset(out, 0, sizeof *out);
  }
  return st;
}

void bsa_eval_result_free(bsa_eval_result *r) {
  if (!r) return;
  free(r->heads);
  free(r->run_start);
  free(r->run_len);
  r->heads = NULL;
  r->run_start = r->run_len = NULL;
  r->num_heads = 0;
  r->num_runs = 0;
}
