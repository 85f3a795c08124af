/*
 * maskgen/io_trace.c - reading and writing attention traces (HDF5, format
 * "bsa-trace" version 1; docs/formats.md).
 *
 * A record is a group /records/<name> holding q [Hq, Sq, D], k [Hkv, Sk, D],
 * optionally v [Hkv, Sk, D] and cluster_id [Hkv, Sk], with the attributes
 * layer, step, causal and sm_scale.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bsa/trace.h"
#include "internal.h"
#include "io_h5.h"

struct bsa_trace {
  bsa__h5_in in;
  char *model;
  char *source;
};

bsa_status bsa_trace_open(const char *path, bsa_trace **out) {
  if (out) *out = NULL;
  if (!path || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_trace_open: path and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_trace *t = calloc(1, sizeof *t);
  bsa_status s = t ? bsa__h5_in_open(&t->in, path, "bsa-trace")
                   : bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
  if (s == BSA_OK) s = bsa__h5_in_attr(&t->in, "model", "", &t->model);
  if (s == BSA_OK) s = bsa__h5_in_attr(&t->in, "source", "", &t->source);
  if (s != BSA_OK) {
    bsa_trace_close(t);
    t = NULL;
  }
  bsa__h5_leave(&g);
  *out = t;
  return s;
}

void bsa_trace_close(bsa_trace *t) {
  if (!t) return;
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa__h5_in_close(&t->in);
  bsa__h5_leave(&g);
  free(t->model);
  free(t->source);
  free(t);
}

int64_t bsa_trace_num_records(const bsa_trace *t) { return t ? t->in.count : 0; }

const char *bsa_trace_record_name(const bsa_trace *t, int64_t i) {
  if (!t || i < 0 || i >= t->in.count) return NULL;
  return t->in.names[i];
}

const char *bsa_trace_model(const bsa_trace *t) { return t && t->model ? t->model : ""; }
const char *bsa_trace_source(const bsa_trace *t) { return t && t->source ? t->source : ""; }
const char *bsa_trace_path(const bsa_trace *t) { return t ? t->in.path : ""; }

void bsa_trace_record_free(bsa_trace_record *r) {
  if (!r) return;
  free(r->name);
  free(r->q);
  free(r->k);
  free(r->v);
  free(r->cluster_id);
  free(r);
}

static int fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* Everything about a record except its arrays' values; keeps the dataset
 * ids open for the caller (closed by close_parts). */
typedef struct parts {
  hid_t grp, q, k, v, cid;
  int64_t qd[3], kd[3], vd[3], cd[2];
} parts;

static void close_parts(parts *p) {
  if (p->q >= 0) H5Dclose(p->q);
  if (p->k >= 0) H5Dclose(p->k);
  if (p->v >= 0) H5Dclose(p->v);
  if (p->cid >= 0) H5Dclose(p->cid);
  if (p->grp >= 0) H5Gclose(p->grp);
}

static bsa_status inspect(bsa_trace *t, const char *name, parts *p, bsa_trace_record_info *info) {
  memset(info, 0, sizeof *info);
  p->grp = p->q = p->k = p->v = p->cid = -1;
  bsa_status s =
      bsa__h5_open_record(t->in.file, t->in.path, t->in.names, t->in.count, name, &p->grp);
  if (s != BSA_OK) return s;
  bsa__h5_where w = {t->in.path, name};
  const char *tq = NULL, *tk = NULL, *tv = NULL;
  s = bsa__h5_dataset_open(p->grp, "q", 1, &w, &p->q);
  if (s == BSA_OK) s = bsa__h5_dataset_open(p->grp, "k", 1, &w, &p->k);
  if (s == BSA_OK) s = bsa__h5_dataset_open(p->grp, "v", 0, &w, &p->v);
  if (s == BSA_OK) s = bsa__h5_dataset_open(p->grp, "cluster_id", 0, &w, &p->cid);
  if (s == BSA_OK)
    s = bsa__h5_dataset_shape(p->q, "q", &w, 3, BSA__H5_FLOAT, "[Hq, Sq, D]", p->qd, &tq);
  if (s == BSA_OK)
    s = bsa__h5_dataset_shape(p->k, "k", &w, 3, BSA__H5_FLOAT, "[Hkv, Sk, D]", p->kd, &tk);
  if (s == BSA_OK && p->v >= 0)
    s = bsa__h5_dataset_shape(p->v, "v", &w, 3, BSA__H5_FLOAT, "[Hkv, Sk, D]", p->vd, &tv);
  if (s == BSA_OK && p->cid >= 0)
    s = bsa__h5_dataset_shape(p->cid, "cluster_id", &w, 2, BSA__H5_INT, "[Hkv, Sk]", p->cd, NULL);
  if (s != BSA_OK) return s;
  const char *F = t->in.path;
  for (int i = 0; i < 3; i++) {
    if (p->qd[i] == 0 || p->kd[i] == 0)
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': dataset '%s' is empty (shape [%lld, %lld, %lld])", F, name,
                       p->qd[i] == 0 ? "q" : "k", (long long)(p->qd[i] == 0 ? p->qd : p->kd)[0],
                       (long long)(p->qd[i] == 0 ? p->qd : p->kd)[1],
                       (long long)(p->qd[i] == 0 ? p->qd : p->kd)[2]);
  }
  if (!fits_i32(p->qd[0]) || !fits_i32(p->kd[0]) || !fits_i32(p->qd[2]))
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: record '%s': head count or head_dim past 2^31", F,
                     name);
  if (p->qd[2] != p->kd[2])
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: record '%s': dataset 'k' has head_dim %lld but 'q' has %lld", F, name,
                     (long long)p->kd[2], (long long)p->qd[2]);
  if (p->qd[0] % p->kd[0] != 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: record '%s': dataset 'q' has %lld heads, not a multiple of the %lld "
                     "kv heads of 'k' (Hq %% Hkv must be 0)",
                     F, name, (long long)p->qd[0], (long long)p->kd[0]);
  if (p->v >= 0 && (p->vd[0] != p->kd[0] || p->vd[1] != p->kd[1] || p->vd[2] != p->kd[2]))
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: record '%s': dataset 'v' has shape [%lld, %lld, %lld] but 'k' has "
                     "[%lld, %lld, %lld]; they must match",
                     F, name, (long long)p->vd[0], (long long)p->vd[1], (long long)p->vd[2],
                     (long long)p->kd[0], (long long)p->kd[1], (long long)p->kd[2]);
  if (p->cid >= 0) {
    if (p->qd[1] != p->kd[1])
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': dataset 'cluster_id' needs Sq == Sk (got %lld and "
                       "%lld)",
                       F, name, (long long)p->qd[1], (long long)p->kd[1]);
    if (p->cd[0] != p->kd[0] || p->cd[1] != p->kd[1])
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': dataset 'cluster_id' has shape [%lld, %lld]; "
                       "expected [Hkv, Sk] = [%lld, %lld]",
                       F, name, (long long)p->cd[0], (long long)p->cd[1], (long long)p->kd[0],
                       (long long)p->kd[1]);
  }

  int64_t v;
  int present;
  info->layer = -1;
  info->step = -1;
  s = bsa__h5_attr_int(p->grp, "layer", &w, &v, &present);
  if (s != BSA_OK) return s;
  if (present) {
    if (!fits_i32(v))
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': attribute layer = %lld is out of range", F, name,
                       (long long)v);
    info->layer = (int32_t)v;
  }
  s = bsa__h5_attr_int(p->grp, "step", &w, &v, &present);
  if (s != BSA_OK) return s;
  if (present) {
    if (!fits_i32(v))
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': attribute step = %lld is out of range", F, name,
                       (long long)v);
    info->step = (int32_t)v;
  }
  s = bsa__h5_attr_int(p->grp, "causal", &w, &v, &present);
  if (s != BSA_OK) return s;
  if (!present)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: record '%s': missing attribute 'causal' (0 or 1)",
                     F, name);
  if (v != 0 && v != 1)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: record '%s': attribute causal = %lld; expected 0 or 1", F, name,
                     (long long)v);
  info->causal = (int32_t)v;
  double d;
  s = bsa__h5_attr_double(p->grp, "sm_scale", &w, &d, &present);
  if (s != BSA_OK) return s;
  if (present) {
    if (!isfinite(d) || d < 0 || d > 1e30)
      return bsa__fail(NULL, BSA_ERR_FORMAT,
                       "%s: record '%s': attribute sm_scale = %g; expected a finite value "
                       ">= 0 (0 = 1/sqrt(D))",
                       F, name, d);
    info->sm_scale = (float)d;
  }
  info->num_qo_heads = (int32_t)p->qd[0];
  info->num_kv_heads = (int32_t)p->kd[0];
  info->head_dim = (int32_t)p->qd[2];
  info->qo_len = p->qd[1];
  info->kv_len = p->kd[1];
  snprintf(info->q_dtype, sizeof info->q_dtype, "%s", tq);
  snprintf(info->k_dtype, sizeof info->k_dtype, "%s", tk);
  snprintf(info->v_dtype, sizeof info->v_dtype, "%s", tv ? tv : "");
  info->has_v = p->v >= 0;
  info->has_cluster_id = p->cid >= 0;
  return BSA_OK;
}

bsa_status bsa_trace_get_record_info(bsa_trace *t, const char *name, bsa_trace_record_info *out) {
  if (!t || !name || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_trace_get_record_info: trace, name and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  parts p;
  bsa_trace_record_info info;
  bsa_status s = inspect(t, name, &p, &info);
  close_parts(&p);
  bsa__h5_leave(&g);
  if (s == BSA_OK) *out = info;
  return s;
}

bsa_status bsa_trace_read_record(bsa_trace *t, const char *name, bsa_trace_record **out) {
  if (out) *out = NULL;
  if (!t || !name || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_trace_read_record: trace, name and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  parts p;
  bsa_trace_record_info info;
  bsa_trace_record *r = NULL;
  int64_t *ids = NULL;
  bsa_status s = inspect(t, name, &p, &info);
  bsa__h5_where w = {t->in.path, name};
  if (s != BSA_OK) goto done;
  r = calloc(1, sizeof *r);
  int64_t nq = p.qd[0] * p.qd[1] * p.qd[2], nk = p.kd[0] * p.kd[1] * p.kd[2];
  if (r) {
    r->name = strdup(name);
    r->q = bsa__h5_alloc_elems(nq, sizeof(float));
    r->k = bsa__h5_alloc_elems(nk, sizeof(float));
    if (p.v >= 0) r->v = bsa__h5_alloc_elems(nk, sizeof(float));
  }
  if (!r || !r->name || !r->q || !r->k || (p.v >= 0 && !r->v)) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory for q/k/v (%lld floats)",
                  t->in.path, name, (long long)(nq + 2 * nk));
    goto done;
  }
  r->num_qo_heads = info.num_qo_heads;
  r->num_kv_heads = info.num_kv_heads;
  r->head_dim = info.head_dim;
  r->qo_len = info.qo_len;
  r->kv_len = info.kv_len;
  r->layer = info.layer;
  r->step = info.step;
  r->causal = info.causal;
  r->sm_scale = info.sm_scale;
  s = bsa__h5_dataset_read_f32(p.q, "q", &w, r->q);
  if (s == BSA_OK) s = bsa__h5_dataset_read_f32(p.k, "k", &w, r->k);
  if (s == BSA_OK && p.v >= 0) s = bsa__h5_dataset_read_f32(p.v, "v", &w, r->v);
  if (s == BSA_OK && p.cid >= 0) {
    int64_t n = p.cd[0] * p.cd[1];
    ids = bsa__h5_alloc_elems(n, sizeof(int64_t));
    r->cluster_id = bsa__h5_alloc_elems(n, sizeof(int32_t));
    if (!ids || !r->cluster_id) {
      s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", t->in.path, name);
      goto done;
    }
    s = bsa__h5_dataset_read_i64(p.cid, "cluster_id", &w, ids, n);
    int64_t mx = -1;
    for (int64_t i = 0; s == BSA_OK && i < n; i++) {
      if (ids[i] < 0 || ids[i] > INT32_MAX - 1)
        s = bsa__fail(NULL, BSA_ERR_FORMAT,
                      "%s: record '%s': dataset 'cluster_id' holds %lld at head %lld, token "
                      "%lld; ids must be >= 0",
                      t->in.path, name, (long long)ids[i], (long long)(i / p.cd[1]),
                      (long long)(i % p.cd[1]));
      else {
        r->cluster_id[i] = (int32_t)ids[i];
        if (ids[i] > mx) mx = ids[i];
      }
    }
    r->num_clusters = (int32_t)(mx + 1);
    if (s == BSA_OK) {
      int64_t nc;
      int present;
      s = bsa__h5_attr_int(p.grp, "num_clusters", &w, &nc, &present);
      if (s == BSA_OK && present) {
        if (nc < mx + 1 || nc > INT32_MAX)
          s = bsa__fail(NULL, BSA_ERR_FORMAT,
                        "%s: record '%s': attribute num_clusters = %lld but dataset "
                        "'cluster_id' holds id %lld",
                        t->in.path, name, (long long)nc, (long long)mx);
        else
          r->num_clusters = (int32_t)nc;
      }
    }
  }
done:
  free(ids);
  close_parts(&p);
  bsa__h5_leave(&g);
  if (s != BSA_OK) {
    bsa_trace_record_free(r);
    return s;
  }
  *out = r;
  return BSA_OK;
}

/* ---- writer -------------------------------------------------------------- */

struct bsa_trace_writer {
  bsa__h5_out out;
  bsa__h5_store store;
};

bsa_status bsa_trace_writer_create(const char *path, bsa_dtype dtype, const char *model,
                                   const char *source, bsa_trace_writer **out) {
  if (out) *out = NULL;
  if (!path || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_trace_writer_create: path and out must not be NULL");
  if (dtype != BSA_DTYPE_F32 && dtype != BSA_DTYPE_F16)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%s: dtype = %s is not supported in trace files; use f32 or f16", path,
                     bsa_dtype_name(dtype));
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = BSA_OK;
  bsa_trace_writer *w = calloc(1, sizeof *w);
  if (!w) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  w->store = dtype == BSA_DTYPE_F16 ? BSA__H5_STORE_F16 : BSA__H5_STORE_F32;
  s = bsa__h5_out_begin(&w->out, path, "bsa-trace");
  if (s == BSA_OK && model) s = bsa__h5_write_attr_string(w->out.file, "model", model, path);
  if (s == BSA_OK && source) s = bsa__h5_write_attr_string(w->out.file, "source", source, path);
  if (s != BSA_OK) {
    bsa__h5_out_discard(&w->out);
    free(w);
    w = NULL;
  }
done:
  bsa__h5_leave(&g);
  *out = w;
  return s;
}

/* Finite values that fit the stored type; names the first offender. */
bsa_status bsa__check_floats(const char *path, const char *rec, const char *ds, const float *x,
                             int64_t d0, int64_t d1, int64_t d2, int f16) {
  int64_t n = d0 * d1 * d2;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (isfinite(v) && (!f16 || fabsf(v) < 65520.0f)) continue;
    int64_t a = i / (d1 * d2), b = (i / d2) % d1, c = i % d2;
    if (!isfinite(v))
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "%s: record '%s': %s[%lld, %lld, %lld] = %g is not finite", path, rec, ds,
                       (long long)a, (long long)b, (long long)c, (double)v);
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%s: record '%s': %s[%lld, %lld, %lld] = %g does not fit float16 "
                     "(|x| <= 65504); write the trace as f32",
                     path, rec, ds, (long long)a, (long long)b, (long long)c, (double)v);
  }
  return BSA_OK;
}

static bsa_status check_trace_record(const bsa_trace_writer *w, const bsa_trace_record *r) {
  const char *P = w->out.path;
  bsa_status s = bsa__h5_check_record_name(r->name, P);
  if (s != BSA_OK) return s;
  const char *N = r->name;
  if (H5Lexists(w->out.records, N, H5P_DEFAULT) > 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record '%s' was already added", P, N);
  if (r->num_qo_heads < 1 || r->num_kv_heads < 1 || r->head_dim < 1 || r->qo_len < 1 ||
      r->kv_len < 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%s: record '%s': Hq = %d, Hkv = %d, D = %d, Sq = %lld, Sk = %lld; all "
                     "must be >= 1",
                     P, N, r->num_qo_heads, r->num_kv_heads, r->head_dim, (long long)r->qo_len,
                     (long long)r->kv_len);
  if (r->num_qo_heads % r->num_kv_heads != 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%s: record '%s': num_qo_heads = %d is not a multiple of num_kv_heads = "
                     "%d",
                     P, N, r->num_qo_heads, r->num_kv_heads);
  if (!r->q || !r->k)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record '%s': %s is NULL", P, N,
                     !r->q ? "q" : "k");
  if (r->causal != 0 && r->causal != 1)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record '%s': causal = %d; expected 0 or 1", P,
                     N, r->causal);
  if (!isfinite(r->sm_scale) || r->sm_scale < 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "%s: record '%s': sm_scale = %g; expected >= 0 (0 = 1/sqrt(D))", P, N,
                     (double)r->sm_scale);
  int f16 = w->store == BSA__H5_STORE_F16;
  s = bsa__check_floats(P, N, "q", r->q, r->num_qo_heads, r->qo_len, r->head_dim, f16);
  if (s == BSA_OK)
    s = bsa__check_floats(P, N, "k", r->k, r->num_kv_heads, r->kv_len, r->head_dim, f16);
  if (s == BSA_OK && r->v)
    s = bsa__check_floats(P, N, "v", r->v, r->num_kv_heads, r->kv_len, r->head_dim, f16);
  if (s != BSA_OK) return s;
  if (r->cluster_id) {
    if (r->qo_len != r->kv_len)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "%s: record '%s': cluster_id needs qo_len == kv_len (got %lld and %lld)", P,
                       N, (long long)r->qo_len, (long long)r->kv_len);
    int64_t n = (int64_t)r->num_kv_heads * r->kv_len;
    for (int64_t i = 0; i < n; i++) {
      int32_t c = r->cluster_id[i];
      if (c < 0 || (r->num_clusters > 0 && c >= r->num_clusters))
        return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                         "%s: record '%s': cluster_id[%lld, %lld] = %d is outside [0, %d)", P, N,
                         (long long)(i / r->kv_len), (long long)(i % r->kv_len), c,
                         r->num_clusters > 0 ? r->num_clusters : INT32_MAX);
    }
  }
  return BSA_OK;
}

bsa_status bsa_trace_writer_add(bsa_trace_writer *w, const bsa_trace_record *r) {
  if (!w || !r)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_trace_writer_add: writer and record must not be NULL");
  if (w->out.spoiled)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: an earlier write failed; abort this writer",
                     w->out.path);
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = check_trace_record(w, r);
  if (s != BSA_OK) goto done;
  bsa__h5_where wh = {w->out.path, r->name};
  hid_t grp;
  if ((s = bsa__h5_out_record(&w->out, r->name, &grp)) != BSA_OK) goto done;
  int64_t qd[3] = {r->num_qo_heads, r->qo_len, r->head_dim};
  int64_t kd[3] = {r->num_kv_heads, r->kv_len, r->head_dim};
  s = bsa__h5_write_dataset(grp, "q", 3, qd, w->store, r->q, &wh);
  if (s == BSA_OK) s = bsa__h5_write_dataset(grp, "k", 3, kd, w->store, r->k, &wh);
  if (s == BSA_OK && r->v) s = bsa__h5_write_dataset(grp, "v", 3, kd, w->store, r->v, &wh);
  if (s == BSA_OK && r->cluster_id) {
    s = bsa__h5_write_dataset(grp, "cluster_id", 2, kd, BSA__H5_STORE_I32, r->cluster_id, &wh);
    if (s == BSA_OK && r->num_clusters > 0)
      s = bsa__h5_write_attr_int(grp, "num_clusters", r->num_clusters, w->out.path);
  }
  if (s == BSA_OK) s = bsa__h5_write_attr_int(grp, "layer", r->layer, w->out.path);
  if (s == BSA_OK) s = bsa__h5_write_attr_int(grp, "step", r->step, w->out.path);
  if (s == BSA_OK) s = bsa__h5_write_attr_int(grp, "causal", r->causal, w->out.path);
  if (s == BSA_OK && r->sm_scale != 0)
    s = bsa__h5_write_attr_double(grp, "sm_scale", r->sm_scale, w->out.path);
  H5Gclose(grp);
  if (s != BSA_OK) w->out.spoiled = 1;
done:
  bsa__h5_leave(&g);
  return s;
}

bsa_status bsa_trace_writer_commit(bsa_trace_writer *w) {
  if (!w) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_trace_writer_commit: writer is NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = bsa__h5_out_commit(&w->out);
  free(w);
  bsa__h5_leave(&g);
  return s;
}

void bsa_trace_writer_abort(bsa_trace_writer *w) {
  if (!w) return;
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa__h5_out_discard(&w->out);
  free(w);
  bsa__h5_leave(&g);
}
