/*
 * maskgen/io_masks.c - reading and writing variable-block masks (HDF5,
 * format "bsa-masks" version 1; docs/formats.md).
 *
 * A record is a group /records/<name> holding block_mask_map [Hkv, MB, NB],
 * block_row_sz [Hkv, MB], block_col_sz [Hkv, NB] and optionally q_perm
 * [Hkv, Sq], k_perm [Hkv, Sk], block_scores [Hkv, MB, NB], with attributes
 * density, recall, qo_len, kv_len.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bsa/trace.h"
#include "internal.h"
#include "io_h5.h"

struct bsa_masks {
  bsa__h5_in in;
  char *method;
  char *params;
  char *trace;
  char *trace_sha256;
};

bsa_status bsa_masks_open(const char *path, bsa_masks **out) {
  if (out) *out = NULL;
  if (!path || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_masks_open: path and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_masks *m = calloc(1, sizeof *m);
  bsa_status s = m ? bsa__h5_in_open(&m->in, path, "bsa-masks")
                   : bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
  if (s == BSA_OK) s = bsa__h5_in_attr(&m->in, "method", "", &m->method);
  if (s == BSA_OK) s = bsa__h5_in_attr(&m->in, "params", "{}", &m->params);
  if (s == BSA_OK) s = bsa__h5_in_attr(&m->in, "trace", "", &m->trace);
  if (s == BSA_OK) s = bsa__h5_in_attr(&m->in, "trace_sha256", "", &m->trace_sha256);
  if (s != BSA_OK) {
    bsa_masks_close(m);
    m = NULL;
  }
  bsa__h5_leave(&g);
  *out = m;
  return s;
}

void bsa_masks_close(bsa_masks *m) {
  if (!m) return;
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa__h5_in_close(&m->in);
  bsa__h5_leave(&g);
  free(m->method);
  free(m->params);
  free(m->trace);
  free(m->trace_sha256);
  free(m);
}

const char *bsa_masks_method(const bsa_masks *m) { return m && m->method ? m->method : ""; }
const char *bsa_masks_params_json(const bsa_masks *m) { return m && m->params ? m->params : "{}"; }
const char *bsa_masks_trace_path(const bsa_masks *m) { return m && m->trace ? m->trace : ""; }
const char *bsa_masks_trace_sha256(const bsa_masks *m) {
  return m && m->trace_sha256 ? m->trace_sha256 : "";
}
const char *bsa_masks_path(const bsa_masks *m) { return m ? m->in.path : ""; }
int64_t bsa_masks_num_records(const bsa_masks *m) { return m ? m->in.count : 0; }
const char *bsa_masks_record_name(const bsa_masks *m, int64_t i) {
  if (!m || i < 0 || i >= m->in.count) return NULL;
  return m->in.names[i];
}

void bsa_mask_record_free(bsa_mask_record *r) {
  if (!r) return;
  free(r->name);
  free(r->block_mask_map);
  free(r->block_row_sz);
  free(r->block_col_sz);
  free(r->q_perm);
  free(r->k_perm);
  free(r->block_scores);
  free(r);
}

/* Checks that sizes [H, nb] are >= 0, fit int32 and sum to the same total
 * for every head (and to want when want >= 0); returns the total. */
static bsa_status check_sizes(const char *F, const char *N, const char *ds, const int64_t *sz,
                              int64_t H, int64_t nb, int64_t want, const char *want_name,
                              int64_t *total, bsa_status err) {
  int64_t first = 0;
  for (int64_t h = 0; h < H; h++) {
    int64_t sum = 0;
    for (int64_t j = 0; j < nb; j++) {
      int64_t v = sz[h * nb + j];
      if (v < 0 || v > INT32_MAX)
        return bsa__fail(NULL, err,
                         "%s: record '%s': %s[%lld, %lld] = %lld; block sizes must be in [0, "
                         "2^31)",
                         F, N, ds, (long long)h, (long long)j, (long long)v);
      sum += v;
    }
    if (h == 0) first = sum;
    if (want >= 0 && sum != want)
      return bsa__fail(NULL, err,
                       "%s: record '%s': %s of head %lld sums to %lld but %s = %lld; the sizes "
                       "must sum to the sequence length",
                       F, N, ds, (long long)h, (long long)sum, want_name, (long long)want);
    if (sum != first)
      return bsa__fail(NULL, err,
                       "%s: record '%s': %s of head %lld sums to %lld but head 0 sums to "
                       "%lld; the sizes must sum to the sequence length for every head",
                       F, N, ds, (long long)h, (long long)sum, (long long)first);
  }
  if (first == 0)
    return bsa__fail(NULL, err, "%s: record '%s': %s sums to 0; the sequence is empty", F, N, ds);
  *total = first;
  return BSA_OK;
}

/* Checks that each row of perm [H, S] is a permutation of 0..S-1. */
static bsa_status check_perm(const char *F, const char *N, const char *ds, const int64_t *p,
                             int64_t H, int64_t S, bsa_status err) {
  uint8_t *seen = malloc((size_t)S);
  if (!seen) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", F, N);
  for (int64_t h = 0; h < H; h++) {
    memset(seen, 0, (size_t)S);
    for (int64_t t = 0; t < S; t++) {
      int64_t v = p[h * S + t];
      if (v < 0 || v >= S) {
        free(seen);
        return bsa__fail(NULL, err,
                         "%s: record '%s': %s is not a permutation: %s[%lld, %lld] = %lld is "
                         "outside [0, %lld)",
                         F, N, ds, ds, (long long)h, (long long)t, (long long)v, (long long)S);
      }
      if (seen[v]) {
        free(seen);
        return bsa__fail(NULL, err,
                         "%s: record '%s': %s is not a permutation: token %lld appears twice "
                         "in head %lld (again at position %lld)",
                         F, N, ds, (long long)v, (long long)h, (long long)t);
      }
      seen[v] = 1;
    }
  }
  free(seen);
  return BSA_OK;
}

/* Reads an integer dataset of the given shape as int64 (rank 2 or 3). */
static bsa_status read_ints(hid_t grp, const char *ds, int required, const bsa__h5_where *w,
                            int rank, const char *doc, const int64_t *want, int64_t **out,
                            int64_t *dims) {
  *out = NULL;
  hid_t d;
  bsa_status s = bsa__h5_dataset_open(grp, ds, required, w, &d);
  if (s != BSA_OK || d < 0) return s;
  s = bsa__h5_dataset_shape(d, ds, w, rank, BSA__H5_INT, doc, dims, NULL);
  if (s == BSA_OK && want) {
    for (int i = 0; i < rank; i++)
      if (want[i] >= 0 && dims[i] != want[i]) {
        if (rank == 2)
          s = bsa__fail(NULL, BSA_ERR_FORMAT,
                        "%s: record '%s': dataset '%s' has shape [%lld, %lld]; expected %s = "
                        "[%lld, %lld]",
                        w->file, w->record, ds, (long long)dims[0], (long long)dims[1], doc,
                        (long long)want[0], (long long)want[1]);
        else
          s = bsa__fail(NULL, BSA_ERR_FORMAT,
                        "%s: record '%s': dataset '%s' has shape [%lld, %lld, %lld]; expected "
                        "%s = [%lld, %lld, %lld]",
                        w->file, w->record, ds, (long long)dims[0], (long long)dims[1],
                        (long long)dims[2], doc, (long long)want[0], (long long)want[1],
                        (long long)want[2]);
        break;
      }
  }
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  if (s == BSA_OK && n == 0)
    s = bsa__fail(NULL, BSA_ERR_FORMAT, "%s: record '%s': dataset '%s' is empty", w->file,
                  w->record, ds);
  int64_t *buf = NULL;
  if (s == BSA_OK) {
    buf = bsa__h5_alloc_elems(n, sizeof(int64_t));
    if (!buf)
      s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory for '%s'", w->file,
                    w->record, ds);
  }
  if (s == BSA_OK) s = bsa__h5_dataset_read_i64(d, ds, w, buf, n);
  H5Dclose(d);
  if (s != BSA_OK) {
    free(buf);
    return s;
  }
  *out = buf;
  return BSA_OK;
}

static int32_t *narrow(const int64_t *x, int64_t n) {
  int32_t *y = bsa__h5_alloc_elems(n, sizeof(int32_t));
  if (y)
    for (int64_t i = 0; i < n; i++) y[i] = (int32_t)x[i];
  return y;
}

bsa_status bsa_masks_read_record(bsa_masks *m, const char *name, bsa_mask_record **out) {
  if (out) *out = NULL;
  if (!m || !name || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_masks_read_record: masks, name and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  const char *F = m->in.path, *N = name;
  bsa__h5_where w = {F, name};
  hid_t grp = -1, sd = -1;
  int64_t *map = NULL, *rs = NULL, *cs = NULL, *qp = NULL, *kp = NULL;
  int64_t md[3], rd[2], cd[2], qd[2], kd[2];
  bsa_mask_record *r = NULL;
  bsa_status s = bsa__h5_open_record(m->in.file, F, m->in.names, m->in.count, name, &grp);
  if (s != BSA_OK) goto done;
  s = read_ints(grp, "block_mask_map", 1, &w, 3, "[Hkv, MB, NB]", NULL, &map, md);
  if (s != BSA_OK) goto done;
  if (md[0] > INT32_MAX) {
    s = bsa__fail(NULL, BSA_ERR_FORMAT, "%s: record '%s': %lld kv heads is too many", F, N,
                  (long long)md[0]);
    goto done;
  }
  int64_t H = md[0], MB = md[1], NB = md[2];
  int64_t want_r[2] = {H, MB}, want_c[2] = {H, NB};
  s = read_ints(grp, "block_row_sz", 1, &w, 2, "[Hkv, MB]", want_r, &rs, rd);
  if (s == BSA_OK) s = read_ints(grp, "block_col_sz", 1, &w, 2, "[Hkv, NB]", want_c, &cs, cd);
  if (s != BSA_OK) goto done;

  /* Sequence lengths: from the sizes, checked against the attributes. */
  int64_t want_q = -1, want_k = -1, v;
  int present;
  s = bsa__h5_attr_int(grp, "qo_len", &w, &v, &present);
  if (s != BSA_OK) goto done;
  if (present) want_q = v;
  s = bsa__h5_attr_int(grp, "kv_len", &w, &v, &present);
  if (s != BSA_OK) goto done;
  if (present) want_k = v;
  int64_t Sq, Sk;
  s = check_sizes(F, N, "block_row_sz", rs, H, MB, want_q, "attribute qo_len", &Sq, BSA_ERR_FORMAT);
  if (s == BSA_OK)
    s = check_sizes(F, N, "block_col_sz", cs, H, NB, want_k, "attribute kv_len", &Sk,
                    BSA_ERR_FORMAT);
  if (s != BSA_OK) goto done;

  int64_t want_qp[2] = {H, Sq}, want_kp[2] = {H, Sk};
  s = read_ints(grp, "q_perm", 0, &w, 2, "[Hkv, Sq]", want_qp, &qp, qd);
  if (s == BSA_OK) s = read_ints(grp, "k_perm", 0, &w, 2, "[Hkv, Sk]", want_kp, &kp, kd);
  if (s == BSA_OK && qp) s = check_perm(F, N, "q_perm", qp, H, Sq, BSA_ERR_FORMAT);
  if (s == BSA_OK && kp) s = check_perm(F, N, "k_perm", kp, H, Sk, BSA_ERR_FORMAT);
  if (s != BSA_OK) goto done;

  r = calloc(1, sizeof *r);
  if (!r) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", F, N);
    goto done;
  }
  r->name = strdup(name);
  r->num_kv_heads = (int32_t)H;
  r->qo_len = Sq;
  r->kv_len = Sk;
  r->num_block_rows = MB;
  r->num_block_cols = NB;
  r->block_mask_map = bsa__h5_alloc_elems(H * MB * NB, 1);
  if (r->block_mask_map)
    for (int64_t i = 0; i < H * MB * NB; i++) r->block_mask_map[i] = map[i] != 0;
  r->block_row_sz = narrow(rs, H * MB);
  r->block_col_sz = narrow(cs, H * NB);
  if (qp) r->q_perm = narrow(qp, H * Sq);
  if (kp) r->k_perm = narrow(kp, H * Sk);
  if (!r->name || !r->block_mask_map || !r->block_row_sz || !r->block_col_sz ||
      (qp && !r->q_perm) || (kp && !r->k_perm)) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", F, N);
    goto done;
  }

  s = bsa__h5_dataset_open(grp, "block_scores", 0, &w, &sd);
  if (s == BSA_OK && sd >= 0) {
    int64_t sdims[3];
    s = bsa__h5_dataset_shape(sd, "block_scores", &w, 3, BSA__H5_FLOAT, "[Hkv, MB, NB]", sdims,
                              NULL);
    if (s == BSA_OK && (sdims[0] != H || sdims[1] != MB || sdims[2] != NB))
      s = bsa__fail(NULL, BSA_ERR_FORMAT,
                    "%s: record '%s': dataset 'block_scores' has shape [%lld, %lld, %lld]; "
                    "expected [Hkv, MB, NB] = [%lld, %lld, %lld] like block_mask_map",
                    F, N, (long long)sdims[0], (long long)sdims[1], (long long)sdims[2],
                    (long long)H, (long long)MB, (long long)NB);
    if (s == BSA_OK) {
      r->block_scores = bsa__h5_alloc_elems(H * MB * NB, sizeof(float));
      if (!r->block_scores)
        s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", F, N);
    }
    if (s == BSA_OK) s = bsa__h5_dataset_read_f32(sd, "block_scores", &w, r->block_scores);
  }
  if (s != BSA_OK) goto done;
  double d;
  r->density = NAN;
  r->recall = NAN;
  s = bsa__h5_attr_double(grp, "density", &w, &d, &present);
  if (s == BSA_OK && present) r->density = d;
  if (s == BSA_OK) s = bsa__h5_attr_double(grp, "recall", &w, &d, &present);
  if (s == BSA_OK && present) r->recall = d;
done:
  if (sd >= 0) H5Dclose(sd);
  if (grp >= 0) H5Gclose(grp);
  bsa__h5_leave(&g);
  free(map);
  free(rs);
  free(cs);
  free(qp);
  free(kp);
  if (s != BSA_OK) {
    bsa_mask_record_free(r);
    return s;
  }
  *out = r;
  return BSA_OK;
}

/* ---- writer -------------------------------------------------------------- */

struct bsa_masks_writer {
  bsa__h5_out out;
};

bsa_status bsa_masks_writer_create(const char *path, const char *method, const char *params_json,
                                   const char *trace_path, const char *trace_sha256,
                                   bsa_masks_writer **out) {
  if (out) *out = NULL;
  if (!path || !out)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_masks_writer_create: path and out must not be NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = BSA_OK;
  bsa_masks_writer *w = calloc(1, sizeof *w);
  if (!w) {
    s = bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  s = bsa__h5_out_begin(&w->out, path, "bsa-masks");
  hid_t f = w->out.file;
  if (s == BSA_OK) s = bsa__h5_write_attr_string(f, "method", method, path);
  if (s == BSA_OK)
    s = bsa__h5_write_attr_string(f, "params", params_json ? params_json : "{}", path);
  if (s == BSA_OK) s = bsa__h5_write_attr_string(f, "trace", trace_path, path);
  if (s == BSA_OK) s = bsa__h5_write_attr_string(f, "trace_sha256", trace_sha256, path);
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

static bsa_status check_mask_record(const bsa_masks_writer *w, const bsa_mask_record *r) {
  const char *P = w->out.path;
  bsa_status s = bsa__h5_check_record_name(r->name, P);
  if (s != BSA_OK) return s;
  const char *N = r->name;
  const bsa_status E = BSA_ERR_INVALID_ARG;
  if (H5Lexists(w->out.records, N, H5P_DEFAULT) > 0)
    return bsa__fail(NULL, E, "%s: record '%s' was already added", P, N);
  if (r->num_kv_heads < 1 || r->num_block_rows < 1 || r->num_block_cols < 1 || r->qo_len < 1 ||
      r->kv_len < 1)
    return bsa__fail(NULL, E,
                     "%s: record '%s': Hkv = %d, MB = %lld, NB = %lld, Sq = %lld, Sk = %lld; "
                     "all must be >= 1",
                     P, N, r->num_kv_heads, (long long)r->num_block_rows,
                     (long long)r->num_block_cols, (long long)r->qo_len, (long long)r->kv_len);
  if (!r->block_mask_map || !r->block_row_sz || !r->block_col_sz)
    return bsa__fail(NULL, E, "%s: record '%s': %s is NULL", P, N,
                     !r->block_mask_map ? "block_mask_map"
                     : !r->block_row_sz ? "block_row_sz"
                                        : "block_col_sz");
  int64_t H = r->num_kv_heads, MB = r->num_block_rows, NB = r->num_block_cols;
  for (int64_t i = 0; i < H * MB * NB; i++)
    if (r->block_mask_map[i] > 1)
      return bsa__fail(NULL, E,
                       "%s: record '%s': block_mask_map[%lld, %lld, %lld] = %d; expected 0 or 1", P,
                       N, (long long)(i / (MB * NB)), (long long)((i / NB) % MB),
                       (long long)(i % NB), r->block_mask_map[i]);
  /* Sizes and perms are checked through the reader's helpers (on int64). */
  int64_t n = H * (MB > NB ? MB : NB);
  int64_t sl = r->qo_len > r->kv_len ? r->qo_len : r->kv_len;
  if (H * sl > n) n = H * sl;
  int64_t *tmp = bsa__h5_alloc_elems(n, sizeof(int64_t));
  if (!tmp) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: record '%s': out of memory", P, N);
  int64_t total;
  for (int64_t i = 0; i < H * MB; i++) tmp[i] = r->block_row_sz[i];
  s = check_sizes(P, N, "block_row_sz", tmp, H, MB, r->qo_len, "qo_len", &total, E);
  if (s == BSA_OK) {
    for (int64_t i = 0; i < H * NB; i++) tmp[i] = r->block_col_sz[i];
    s = check_sizes(P, N, "block_col_sz", tmp, H, NB, r->kv_len, "kv_len", &total, E);
  }
  if (s == BSA_OK && r->q_perm) {
    for (int64_t i = 0; i < H * r->qo_len; i++) tmp[i] = r->q_perm[i];
    s = check_perm(P, N, "q_perm", tmp, H, r->qo_len, E);
  }
  if (s == BSA_OK && r->k_perm) {
    for (int64_t i = 0; i < H * r->kv_len; i++) tmp[i] = r->k_perm[i];
    s = check_perm(P, N, "k_perm", tmp, H, r->kv_len, E);
  }
  free(tmp);
  if (s == BSA_OK && r->block_scores)
    for (int64_t i = 0; i < H * MB * NB; i++)
      if (isnan(r->block_scores[i]))
        return bsa__fail(NULL, E, "%s: record '%s': block_scores[%lld, %lld, %lld] is NaN", P, N,
                         (long long)(i / (MB * NB)), (long long)((i / NB) % MB),
                         (long long)(i % NB));
  return s;
}

bsa_status bsa_masks_writer_add(bsa_masks_writer *w, const bsa_mask_record *r) {
  if (!w || !r)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "bsa_masks_writer_add: writer and record must not be NULL");
  if (w->out.spoiled)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: an earlier write failed; abort this writer",
                     w->out.path);
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = check_mask_record(w, r);
  if (s != BSA_OK) goto done;
  bsa__h5_where wh = {w->out.path, r->name};
  hid_t grp;
  if ((s = bsa__h5_out_record(&w->out, r->name, &grp)) != BSA_OK) goto done;
  int64_t H = r->num_kv_heads;
  int64_t md[3] = {H, r->num_block_rows, r->num_block_cols};
  int64_t rd[2] = {H, r->num_block_rows}, cd[2] = {H, r->num_block_cols};
  int64_t qd[2] = {H, r->qo_len}, kd[2] = {H, r->kv_len};
  s = bsa__h5_write_dataset(grp, "block_mask_map", 3, md, BSA__H5_STORE_U8, r->block_mask_map, &wh);
  if (s == BSA_OK)
    s = bsa__h5_write_dataset(grp, "block_row_sz", 2, rd, BSA__H5_STORE_I32, r->block_row_sz, &wh);
  if (s == BSA_OK)
    s = bsa__h5_write_dataset(grp, "block_col_sz", 2, cd, BSA__H5_STORE_I32, r->block_col_sz, &wh);
  if (s == BSA_OK && r->q_perm)
    s = bsa__h5_write_dataset(grp, "q_perm", 2, qd, BSA__H5_STORE_I32, r->q_perm, &wh);
  if (s == BSA_OK && r->k_perm)
    s = bsa__h5_write_dataset(grp, "k_perm", 2, kd, BSA__H5_STORE_I32, r->k_perm, &wh);
  if (s == BSA_OK && r->block_scores)
    s = bsa__h5_write_dataset(grp, "block_scores", 3, md, BSA__H5_STORE_F32, r->block_scores, &wh);
  if (s == BSA_OK) s = bsa__h5_write_attr_int(grp, "qo_len", r->qo_len, w->out.path);
  if (s == BSA_OK) s = bsa__h5_write_attr_int(grp, "kv_len", r->kv_len, w->out.path);
  if (s == BSA_OK && !isnan(r->density))
    s = bsa__h5_write_attr_double(grp, "density", r->density, w->out.path);
  if (s == BSA_OK && !isnan(r->recall))
    s = bsa__h5_write_attr_double(grp, "recall", r->recall, w->out.path);
  H5Gclose(grp);
  if (s != BSA_OK) w->out.spoiled = 1;
done:
  bsa__h5_leave(&g);
  return s;
}

bsa_status bsa_masks_writer_commit(bsa_masks_writer *w) {
  if (!w) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_masks_writer_commit: writer is NULL");
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa_status s = bsa__h5_out_commit(&w->out);
  free(w);
  bsa__h5_leave(&g);
  return s;
}

void bsa_masks_writer_abort(bsa_masks_writer *w) {
  if (!w) return;
  bsa__h5_guard g;
  bsa__h5_enter(&g);
  bsa__h5_out_discard(&w->out);
  free(w);
  bsa__h5_leave(&g);
}
