/*
 * tests/check_trace.c - trace and mask files (maskgen/io_*.c) and synthetic
 * traces (maskgen/synth.c).
 *
 * Round trips through our writer and reader (float32 exact, float16 equal
 * to round-to-nearest-even), files crafted with the raw HDF5 API the way
 * other tools write them (fixed and variable strings, h5py's bool enum,
 * float16 built from a float32 copy, big-endian floats, int64 sizes), every
 * bad-file error with its message (file, record, dataset), writers that
 * fail without touching an existing file, and synthetic traces: determinism
 * and the planted structure.  Every check draws a fresh seed (printed in
 * failure messages).
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bsa.h"
#include "bsa/trace.h"

/* ---- randomness ------------------------------------------------------------ */

static uint64_t fresh_seed(void) {
  static uint64_t counter;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t s = (uint64_t)ts.tv_nsec * 6364136223846793005ull ^ (uint64_t)ts.tv_sec ^
               (uint64_t)getpid() << 32 ^ ++counter * 0x9e3779b97f4a7c15ull;
  return s ? s : 1;
}

static uint64_t rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1.0p-53; }
static int64_t irange(uint64_t *s, int64_t lo, int64_t hi) {
  return lo + (int64_t)(rnd(s) % (uint64_t)(hi - lo + 1));
}

/* Normal values, never exactly zero. */
static float *normals(uint64_t *s, int64_t n, double scale) {
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    double u1 = unit(s), u2 = unit(s);
    if (u1 < 1e-300) u1 = 1e-300;
    double v = scale * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
    x[i] = v == 0 ? 1e-3f : (float)v;
  }
  return x;
}

/* ---- files ------------------------------------------------------------------ */

static char tmpdir[512];

static void make_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/bsa-check-trace-XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(tmpdir);
}

static const char *tpath(const char *name) {
  static char buf[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

/* Files in tmpdir whose name contains ".tmp-" (left-over temporaries). */
static int count_temporaries(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp-")) n++;
  closedir(d);
  return n;
}

static unsigned char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*len + 1);
  size_t got = fread(b, 1, (size_t)*len, f);
  fclose(f);
  ck_assert_int_eq((long)got, *len);
  return b;
}

#define ASSERT_MSG_HAS(sub)                                                                   \
  ck_assert_msg(strstr(bsa_last_error(), (sub)) != NULL, "message \"%s\" lacks \"%s\"",       \
                bsa_last_error(), (sub))

/* ---- records ------------------------------------------------------------------ */

static bsa_trace_record *random_trace_record(uint64_t *s, const char *name, int with_v,
                                             int with_cid) {
  static const int heads[4][2] = {{1, 1}, {4, 1}, {4, 2}, {6, 3}};
  int hc = (int)irange(s, 0, 3);
  bsa_trace_record *r = calloc(1, sizeof *r);
  r->name = strdup(name);
  r->num_qo_heads = heads[hc][0];
  r->num_kv_heads = heads[hc][1];
  r->head_dim = (int32_t)irange(s, 1, 72);
  r->qo_len = irange(s, 1, 300);
  r->kv_len = with_cid ? r->qo_len : irange(s, 1, 300);
  int64_t nq = (int64_t)r->num_qo_heads * r->qo_len * r->head_dim;
  int64_t nk = (int64_t)r->num_kv_heads * r->kv_len * r->head_dim;
  r->q = normals(s, nq, 3.0);
  r->k = normals(s, nk, 3.0);
  if (with_v) r->v = normals(s, nk, 1.0);
  /* Values far from 1: large ones and float16 subnormals. */
  r->q[0] = 60000.0f;
  r->k[nk - 1] = -3.0e-6f;
  r->layer = (int32_t)irange(s, 0, 80);
  r->step = (int32_t)irange(s, -1, 5);
  r->causal = (int32_t)irange(s, 0, 1);
  r->sm_scale = irange(s, 0, 1) ? (float)unit(s) + 0.01f : 0.0f;
  if (with_cid) {
    r->num_clusters = (int32_t)irange(s, 1, 9);
    r->cluster_id = malloc(sizeof(int32_t) * (size_t)(r->num_kv_heads * r->kv_len));
    for (int64_t i = 0; i < r->num_kv_heads * r->kv_len; i++)
      r->cluster_id[i] = (int32_t)irange(s, 0, r->num_clusters - 1);
  }
  return r;
}

static float round_f16(float x) { return bsa_f16_to_f32(bsa_f32_to_f16(x)); }

static void expect_same_floats(const float *got, const float *want, int64_t n, int f16,
                               const char *what, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    float w = f16 ? round_f16(want[i]) : want[i];
    ck_assert_msg(got[i] == w, "seed %llu: %s[%lld] = %.9g, want %.9g", (unsigned long long)seed,
                  what, (long long)i, (double)got[i], (double)w);
  }
}

START_TEST(test_trace_roundtrip) {
  uint64_t seed = fresh_seed(), s = seed;
  int f16 = _i;
  make_tmpdir();
  const char *path = tpath("t.h5");
  bsa_trace_record *r[3];
  r[0] = random_trace_record(&s, "layer 10 \xc2\xb7 step 2", 1, 0); /* spaces, UTF-8 */
  r[1] = random_trace_record(&s, "a", 0, 0);                         /* no v */
  r[2] = random_trace_record(&s, "Z_first", 1, 1);                   /* cluster ids */
  bsa_trace_writer *w;
  ck_assert_int_eq(bsa_trace_writer_create(path, f16 ? BSA_DTYPE_F16 : BSA_DTYPE_F32, "m\"odel",
                                           "src\nline 2", &w),
                   BSA_OK);
  for (int i = 0; i < 3; i++)
    ck_assert_msg(bsa_trace_writer_add(w, r[i]) == BSA_OK, "seed %llu: %s",
                  (unsigned long long)seed, bsa_last_error());
  ck_assert_int_eq(count_temporaries(), 1);
  ck_assert_int_eq(bsa_trace_writer_commit(w), BSA_OK);
  ck_assert_int_eq(count_temporaries(), 0);

  bsa_trace *t;
  ck_assert_msg(bsa_trace_open(path, &t) == BSA_OK, "%s", bsa_last_error());
  ck_assert_int_eq(bsa_trace_num_records(t), 3);
  /* Sorted by name (strcmp): "Z_first" < "a" < "layer ...". */
  ck_assert_str_eq(bsa_trace_record_name(t, 0), "Z_first");
  ck_assert_str_eq(bsa_trace_record_name(t, 1), "a");
  ck_assert_str_eq(bsa_trace_record_name(t, 2), r[0]->name);
  ck_assert_ptr_null(bsa_trace_record_name(t, 3));
  ck_assert_ptr_null(bsa_trace_record_name(t, -1));
  ck_assert_str_eq(bsa_trace_model(t), "m\"odel");
  ck_assert_str_eq(bsa_trace_source(t), "src\nline 2");
  for (int i = 0; i < 3; i++) {
    bsa_trace_record *o = (bsa_trace_record *)0x1;
    ck_assert_msg(bsa_trace_read_record(t, r[i]->name, &o) == BSA_OK, "%s", bsa_last_error());
    ck_assert_str_eq(o->name, r[i]->name);
    ck_assert_int_eq(o->num_qo_heads, r[i]->num_qo_heads);
    ck_assert_int_eq(o->num_kv_heads, r[i]->num_kv_heads);
    ck_assert_int_eq(o->head_dim, r[i]->head_dim);
    ck_assert_int_eq(o->qo_len, r[i]->qo_len);
    ck_assert_int_eq(o->kv_len, r[i]->kv_len);
    ck_assert_int_eq(o->layer, r[i]->layer);
    ck_assert_int_eq(o->step, r[i]->step);
    ck_assert_int_eq(o->causal, r[i]->causal);
    ck_assert(o->sm_scale == r[i]->sm_scale);
    int64_t nq = (int64_t)o->num_qo_heads * o->qo_len * o->head_dim;
    int64_t nk = (int64_t)o->num_kv_heads * o->kv_len * o->head_dim;
    expect_same_floats(o->q, r[i]->q, nq, f16, "q", seed);
    expect_same_floats(o->k, r[i]->k, nk, f16, "k", seed);
    if (r[i]->v)
      expect_same_floats(o->v, r[i]->v, nk, f16, "v", seed);
    else
      ck_assert_ptr_null(o->v);
    if (r[i]->cluster_id) {
      ck_assert_int_eq(o->num_clusters, r[i]->num_clusters);
      ck_assert_mem_eq(o->cluster_id, r[i]->cluster_id,
                       sizeof(int32_t) * (size_t)(o->num_kv_heads * o->kv_len));
    } else {
      ck_assert_ptr_null(o->cluster_id);
      ck_assert_int_eq(o->num_clusters, 0);
    }
    bsa_trace_record_info info;
    memset(&info, 0x5a, sizeof info);
    ck_assert_int_eq(bsa_trace_get_record_info(t, r[i]->name, &info), BSA_OK);
    ck_assert_str_eq(info.q_dtype, f16 ? "float16" : "float32");
    ck_assert_str_eq(info.v_dtype, r[i]->v ? (f16 ? "float16" : "float32") : "");
    ck_assert_int_eq(info.has_v, r[i]->v != NULL);
    ck_assert_int_eq(info.has_cluster_id, r[i]->cluster_id != NULL);
    ck_assert_int_eq(info.qo_len, r[i]->qo_len);
    bsa_trace_record_free(o);
  }
  bsa_trace_record *o = NULL;
  ck_assert_int_eq(bsa_trace_read_record(t, "nope", &o), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_null(o);
  ASSERT_MSG_HAS("no record 'nope'");
  ASSERT_MSG_HAS(path);
  bsa_trace_close(t);
  for (int i = 0; i < 3; i++) bsa_trace_record_free(r[i]);
  remove_tmpdir();
}
END_TEST

static bsa_mask_record *random_mask_record(uint64_t *s, const char *name) {
  bsa_mask_record *r = calloc(1, sizeof *r);
  r->name = strdup(name);
  int64_t H = irange(s, 1, 4), MB = irange(s, 1, 12), NB = irange(s, 1, 12);
  r->num_kv_heads = (int32_t)H;
  r->num_block_rows = MB;
  r->num_block_cols = NB;
  r->qo_len = irange(s, 1, 200);
  r->kv_len = irange(s, 1, 200);
  r->block_mask_map = malloc((size_t)(H * MB * NB));
  for (int64_t i = 0; i < H * MB * NB; i++) r->block_mask_map[i] = (uint8_t)irange(s, 0, 1);
  r->block_row_sz = malloc(sizeof(int32_t) * (size_t)(H * MB));
  r->block_col_sz = malloc(sizeof(int32_t) * (size_t)(H * NB));
  /* Random partitions, zero sizes allowed. */
  for (int pass = 0; pass < 2; pass++) {
    int64_t nb = pass ? NB : MB, total = pass ? r->kv_len : r->qo_len;
    int32_t *sz = pass ? r->block_col_sz : r->block_row_sz;
    for (int64_t h = 0; h < H; h++) {
      int64_t left = total;
      for (int64_t j = 0; j < nb - 1; j++) {
        int64_t v = irange(s, 0, left);
        sz[h * nb + j] = (int32_t)v;
        left -= v;
      }
      sz[h * nb + nb - 1] = (int32_t)left;
    }
  }
  if (irange(s, 0, 1)) {
    r->q_perm = malloc(sizeof(int32_t) * (size_t)(H * r->qo_len));
    r->k_perm = malloc(sizeof(int32_t) * (size_t)(H * r->kv_len));
    for (int pass = 0; pass < 2; pass++) {
      int64_t S = pass ? r->kv_len : r->qo_len;
      int32_t *p = pass ? r->k_perm : r->q_perm;
      for (int64_t h = 0; h < H; h++) {
        int32_t *ph = p + h * S;
        for (int64_t t = 0; t < S; t++) ph[t] = (int32_t)t;
        for (int64_t t = S - 1; t > 0; t--) {
          int64_t j = irange(s, 0, t);
          int32_t tmp = ph[t];
          ph[t] = ph[j];
          ph[j] = tmp;
        }
      }
    }
    r->block_scores = normals(s, H * MB * NB, 1.0);
  }
  r->density = irange(s, 0, 1) ? unit(s) : NAN;
  r->recall = irange(s, 0, 1) ? unit(s) : NAN;
  return r;
}

START_TEST(test_masks_roundtrip) {
  uint64_t seed = fresh_seed(), s = seed;
  make_tmpdir();
  const char *path = tpath("m.h5");
  bsa_mask_record *r[2] = {random_mask_record(&s, "layer00"), random_mask_record(&s, "layer01")};
  bsa_masks_writer *w;
  ck_assert_int_eq(bsa_masks_writer_create(path, "kmeans", "{\"q_clusters\": 8}", "t.h5",
                                           "abc123", &w),
                   BSA_OK);
  for (int i = 0; i < 2; i++)
    ck_assert_msg(bsa_masks_writer_add(w, r[i]) == BSA_OK, "seed %llu: %s",
                  (unsigned long long)seed, bsa_last_error());
  ck_assert_int_eq(bsa_masks_writer_commit(w), BSA_OK);
  bsa_masks *m;
  ck_assert_msg(bsa_masks_open(path, &m) == BSA_OK, "%s", bsa_last_error());
  ck_assert_str_eq(bsa_masks_method(m), "kmeans");
  ck_assert_str_eq(bsa_masks_params_json(m), "{\"q_clusters\": 8}");
  ck_assert_str_eq(bsa_masks_trace_path(m), "t.h5");
  ck_assert_str_eq(bsa_masks_trace_sha256(m), "abc123");
  ck_assert_int_eq(bsa_masks_num_records(m), 2);
  for (int i = 0; i < 2; i++) {
    bsa_mask_record *o;
    ck_assert_msg(bsa_masks_read_record(m, r[i]->name, &o) == BSA_OK, "seed %llu: %s",
                  (unsigned long long)seed, bsa_last_error());
    int64_t H = r[i]->num_kv_heads, MB = r[i]->num_block_rows, NB = r[i]->num_block_cols;
    ck_assert_int_eq(o->num_kv_heads, H);
    ck_assert_int_eq(o->num_block_rows, MB);
    ck_assert_int_eq(o->num_block_cols, NB);
    ck_assert_int_eq(o->qo_len, r[i]->qo_len);
    ck_assert_int_eq(o->kv_len, r[i]->kv_len);
    ck_assert_mem_eq(o->block_mask_map, r[i]->block_mask_map, (size_t)(H * MB * NB));
    ck_assert_mem_eq(o->block_row_sz, r[i]->block_row_sz, sizeof(int32_t) * (size_t)(H * MB));
    ck_assert_mem_eq(o->block_col_sz, r[i]->block_col_sz, sizeof(int32_t) * (size_t)(H * NB));
    if (r[i]->q_perm) {
      ck_assert_mem_eq(o->q_perm, r[i]->q_perm, sizeof(int32_t) * (size_t)(H * r[i]->qo_len));
      ck_assert_mem_eq(o->k_perm, r[i]->k_perm, sizeof(int32_t) * (size_t)(H * r[i]->kv_len));
      ck_assert_mem_eq(o->block_scores, r[i]->block_scores, sizeof(float) * (size_t)(H * MB * NB));
    } else {
      ck_assert_ptr_null(o->q_perm);
      ck_assert_ptr_null(o->k_perm);
      ck_assert_ptr_null(o->block_scores);
    }
    ck_assert(isnan(r[i]->density) ? isnan(o->density) : o->density == r[i]->density);
    ck_assert(isnan(r[i]->recall) ? isnan(o->recall) : o->recall == r[i]->recall);
    bsa_mask_record_free(o);
  }
  bsa_masks_close(m);
  for (int i = 0; i < 2; i++) bsa_mask_record_free(r[i]);
  remove_tmpdir();
}
END_TEST

/* ---- files crafted with the raw HDF5 API ------------------------------------- */

static void a_str(hid_t obj, const char *name, const char *v, int fixed) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (fixed) {
    H5Tset_size(t, strlen(v) + 3); /* NUL padded, as numpy bytes are */
    H5Tset_strpad(t, H5T_STR_NULLPAD);
  } else {
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
  }
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (fixed) {
    char buf[256] = {0};
    snprintf(buf, sizeof buf, "%s", v);
    H5Awrite(a, t, buf);
  } else {
    H5Awrite(a, t, &v);
  }
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

static void a_num(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, mtype, v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void a_i64(hid_t obj, const char *name, int64_t v) {
  a_num(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

/* h5py's numpy.bool_: an enum of int8 with FALSE = 0, TRUE = 1. */
static hid_t bool_type(void) {
  hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
  int8_t f = 0, tr = 1;
  H5Tenum_insert(t, "FALSE", &f);
  H5Tenum_insert(t, "TRUE", &tr);
  return t;
}

static hid_t half_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

/* Writes dataset name of file type ftype from data in memory type mtype. */
static void ds(hid_t grp, const char *name, hid_t ftype, hid_t mtype, int rank,
               const int64_t *dims, const void *data) {
  hsize_t d[4];
  for (int i = 0; i < rank; i++) d[i] = (hsize_t)dims[i];
  hid_t sp = H5Screate_simple(rank, d, NULL);
  hid_t x = H5Dcreate2(grp, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert_int_ge(x, 0);
  if (data) ck_assert_int_ge(H5Dwrite(x, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  H5Dclose(x);
  H5Sclose(sp);
}

static hid_t new_file(const char *path, const char *format, int64_t version) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert_int_ge(f, 0);
  if (format) a_str(f, "format", format, 0);
  if (version) a_i64(f, "format_version", version);
  return f;
}

static hid_t new_group(hid_t f, const char *name) {
  if (H5Lexists(f, "records", H5P_DEFAULT) <= 0) H5Gclose(H5Gcreate2(f, "records", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  hid_t r = H5Gopen2(f, "records", H5P_DEFAULT);
  hid_t g = H5Gcreate2(r, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(r);
  return g;
}

/* Files the way other tools write them: fixed-length strings, int32 and
 * bool attributes, float16 and big-endian float32 data, a float causal. */
START_TEST(test_trace_foreign_types) {
  uint64_t seed = fresh_seed(), s = seed;
  make_tmpdir();
  const char *path = tpath("foreign.h5");
  int64_t Hq = 4, Hkv = 2, S = irange(&s, 3, 90), D = irange(&s, 2, 40);
  float *q = normals(&s, Hq * S * D, 2.0), *k = normals(&s, Hkv * S * D, 2.0);
  float *v = normals(&s, Hkv * S * D, 2.0);
  uint16_t *qh = malloc(2 * (size_t)(Hq * S * D));
  bsa_convert(qh, BSA_DTYPE_F16, q, BSA_DTYPE_F32, (size_t)(Hq * S * D));
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  a_str(f, "format", "bsa-trace", 1);
  int32_t ver = 1;
  a_num(f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &ver);
  a_str(f, "model", "tiny \xe2\x9c\x93", 0);
  hid_t g = new_group(f, "x");
  hid_t ht = half_type();
  int64_t qd[3] = {Hq, S, D}, kd[3] = {Hkv, S, D};
  ds(g, "q", ht, ht, 3, qd, qh);
  ds(g, "k", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 3, kd, k);
  ds(g, "v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, v);
  hid_t bt = bool_type();
  int8_t yes = 1;
  a_num(g, "causal", bt, bt, &yes);
  int16_t layer = 7;
  a_num(g, "layer", H5T_STD_I16BE, H5T_NATIVE_INT16, &layer);
  float sc = 0.25f;
  a_num(g, "sm_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &sc);
  H5Gclose(g);
  /* A second record with causal stored as a float 0.0 and no step. */
  g = new_group(f, "y");
  ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
  ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
  double zero = 0.0;
  a_num(g, "causal", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &zero);
  H5Gclose(g);
  /* Not a record: a dataset directly under /records is skipped. */
  hid_t rg = H5Gopen2(f, "records", H5P_DEFAULT);
  ds(rg, "stray", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
  H5Gclose(rg);
  H5Tclose(ht);
  H5Tclose(bt);
  H5Fclose(f);

  bsa_trace *t;
  ck_assert_msg(bsa_trace_open(path, &t) == BSA_OK, "%s", bsa_last_error());
  ck_assert_int_eq(bsa_trace_num_records(t), 2);
  ck_assert_str_eq(bsa_trace_model(t), "tiny \xe2\x9c\x93");
  ck_assert_str_eq(bsa_trace_source(t), "");
  bsa_trace_record *o;
  ck_assert_msg(bsa_trace_read_record(t, "x", &o) == BSA_OK, "%s", bsa_last_error());
  ck_assert_int_eq(o->causal, 1);
  ck_assert_int_eq(o->layer, 7);
  ck_assert_int_eq(o->step, -1);
  ck_assert(o->sm_scale == 0.25f);
  expect_same_floats(o->q, q, Hq * S * D, 1, "q (float16)", seed);
  expect_same_floats(o->k, k, Hkv * S * D, 0, "k (big-endian)", seed);
  expect_same_floats(o->v, v, Hkv * S * D, 0, "v", seed);
  bsa_trace_record_free(o);
  ck_assert_msg(bsa_trace_read_record(t, "y", &o) == BSA_OK, "%s", bsa_last_error());
  ck_assert_int_eq(o->causal, 0);
  ck_assert_int_eq(o->layer, -1);
  ck_assert_ptr_null(o->v);
  bsa_trace_record_free(o);
  bsa_trace_close(t);

  /* Masks with int64 sizes, a bool map and int64 perms (numpy defaults). */
  path = tpath("foreign-masks.h5");
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  a_str(f, "format", "bsa-masks", 1);
  a_i64(f, "format_version", 1);
  a_str(f, "method", "handmade", 1);
  g = new_group(f, "r");
  int64_t H = 2, MB = 3, NB = 2;
  int8_t map[12];
  for (int i = 0; i < 12; i++) map[i] = (int8_t)irange(&s, 0, 1);
  int64_t rs[6] = {2, 0, 3, 1, 1, 3}, cs[4] = {4, 1, 0, 5};
  int64_t md[3] = {H, MB, NB}, rd[2] = {H, MB}, cd[2] = {H, NB}, pd[2] = {H, 5};
  int64_t qp[10] = {4, 3, 2, 1, 0, 0, 2, 4, 1, 3};
  bt = bool_type();
  ds(g, "block_mask_map", bt, bt, 3, md, map);
  ds(g, "block_row_sz", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, rd, rs);
  ds(g, "block_col_sz", H5T_STD_I64BE, H5T_NATIVE_INT64, 2, cd, cs);
  ds(g, "q_perm", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, pd, qp);
  H5Tclose(bt);
  H5Gclose(g);
  H5Fclose(f);
  bsa_masks *m;
  ck_assert_msg(bsa_masks_open(path, &m) == BSA_OK, "%s", bsa_last_error());
  ck_assert_str_eq(bsa_masks_method(m), "handmade");
  ck_assert_str_eq(bsa_masks_params_json(m), "{}");
  bsa_mask_record *mr;
  ck_assert_msg(bsa_masks_read_record(m, "r", &mr) == BSA_OK, "%s", bsa_last_error());
  ck_assert_int_eq(mr->qo_len, 5);
  ck_assert_int_eq(mr->kv_len, 5);
  for (int i = 0; i < 12; i++) ck_assert_int_eq(mr->block_mask_map[i], map[i]);
  for (int i = 0; i < 6; i++) ck_assert_int_eq(mr->block_row_sz[i], rs[i]);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(mr->block_col_sz[i], cs[i]);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(mr->q_perm[i], qp[i]);
  ck_assert_ptr_null(mr->k_perm);
  ck_assert(isnan(mr->density) && isnan(mr->recall));
  bsa_mask_record_free(mr);
  bsa_masks_close(m);
  free(q);
  free(k);
  free(v);
  free(qh);
  remove_tmpdir();
}
END_TEST

/* ---- bad trace files ------------------------------------------------------------ */

typedef struct bad_case {
  const char *what;
  int at_open;          /* the error comes from open, not from reading "r" */
  bsa_status status;
  const char *needles[3]; /* substrings the message must hold, besides the path */
} bad_case;

/* Writes the file of bad trace case i; a good record "r" except for the
 * one defect. */
static void write_bad_trace(int i, const char *path, uint64_t *s) {
  int64_t Hq = 4, Hkv = 2, S = irange(s, 2, 20), D = irange(s, 2, 16);
  float *q = normals(s, 4 * Hq * S * D, 1.0), *k = normals(s, 4 * Hkv * S * D, 1.0);
  int64_t qd[3] = {Hq, S, D}, kd[3] = {Hkv, S, D};
  hid_t f = new_file(path, i == 0 ? NULL : i == 1 ? "bsa-masks" : "bsa-trace",
                     i == 2 ? 2 : i == 13 ? 0 : 1);
  if (i == 3) {
    H5Fclose(f);
    free(q);
    free(k);
    return;
  }
  hid_t g = new_group(f, "r");
  int causal = 1;
  switch (i) {
    case 4: /* no q */
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      break;
    case 5: { /* k of rank 2 */
      int64_t k2[2] = {Hkv, S * D};
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, k2, k);
      break;
    }
    case 6: { /* q of int32 */
      int32_t *qi = calloc((size_t)(Hq * S * D), 4);
      ds(g, "q", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, qd, qi);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      free(qi);
      break;
    }
    case 7: { /* q of float64 */
      double *qd64 = calloc((size_t)(Hq * S * D), 8);
      for (int64_t j = 0; j < Hq * S * D; j++) qd64[j] = q[j];
      ds(g, "q", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, qd, qd64);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      free(qd64);
      break;
    }
    case 8: { /* 3 query heads over 2 kv heads */
      int64_t q3[3] = {3, S, D};
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, q3, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      break;
    }
    case 9: { /* v longer than k */
      int64_t vd[3] = {Hkv, S + 1, D};
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      ds(g, "v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, vd, k);
      break;
    }
    case 10: { /* head_dim differs */
      int64_t k3[3] = {Hkv, S, D + 1};
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, k3, k);
      break;
    }
    case 11: /* no causal attribute */
      causal = 0;
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      break;
    case 12: /* causal = 2 */
      causal = 0;
      a_i64(g, "causal", 2);
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      break;
    default:
      ds(g, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, qd, q);
      ds(g, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, kd, k);
      break;
  }
  if (causal) a_i64(g, "causal", 0);
  H5Gclose(g);
  H5Fclose(f);
  free(q);
  free(k);
}

static const bad_case BAD_TRACES[] = {
    {"no format attribute", 1, BSA_ERR_FORMAT, {"'format'", "bsa-trace", NULL}},
    {"a masks file", 1, BSA_ERR_FORMAT, {"format = \"bsa-masks\"", "\"bsa-trace\"", NULL}},
    {"format_version 2", 1, BSA_ERR_FORMAT, {"format_version = 2", NULL, NULL}},
    {"no /records", 1, BSA_ERR_FORMAT, {"/records", NULL, NULL}},
    {"missing q", 0, BSA_ERR_FORMAT, {"record 'r'", "missing dataset 'q'", NULL}},
    {"k of rank 2", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'k' has rank 2", "[Hkv, Sk, D]"}},
    {"q of int32", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'q' has dtype int32", "float16 or float32"}},
    {"q of float64", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'q' has dtype float64", NULL}},
    {"Hq % Hkv", 0, BSA_ERR_FORMAT, {"record 'r'", "'q' has 3 heads", "Hq % Hkv"}},
    {"v longer than k", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'v' has shape", "must match"}},
    {"head_dim differs", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'k' has head_dim", NULL}},
    {"no causal", 0, BSA_ERR_FORMAT, {"record 'r'", "missing attribute 'causal'", NULL}},
    {"causal 2", 0, BSA_ERR_FORMAT, {"record 'r'", "causal = 2", NULL}},
    {"no format_version", 1, BSA_ERR_FORMAT, {"'format_version'", NULL, NULL}},
};

static void expect_failure(const bad_case *c, bsa_status st, const char *path) {
  ck_assert_msg(st == c->status, "%s: status %d, want %d (%s)", c->what, st, c->status,
                bsa_last_error());
  ASSERT_MSG_HAS(path);
  for (int j = 0; j < 3 && c->needles[j]; j++) ASSERT_MSG_HAS(c->needles[j]);
}

START_TEST(test_trace_bad_files) {
  uint64_t s = fresh_seed();
  make_tmpdir();
  const bad_case *c = &BAD_TRACES[_i];
  const char *path = tpath("bad.h5");
  write_bad_trace(_i, path, &s);
  bsa_trace *t = (bsa_trace *)0x1;
  bsa_status st = bsa_trace_open(path, &t);
  if (c->at_open) {
    ck_assert_ptr_null(t);
    expect_failure(c, st, path);
  } else {
    ck_assert_msg(st == BSA_OK, "%s: open failed: %s", c->what, bsa_last_error());
    bsa_trace_record *r = (bsa_trace_record *)0x1;
    st = bsa_trace_read_record(t, "r", &r);
    ck_assert_ptr_null(r);
    expect_failure(c, st, path);
    bsa_trace_record_info info;
    st = bsa_trace_get_record_info(t, "r", &info);
    expect_failure(c, st, path);
    bsa_trace_close(t);
  }
  remove_tmpdir();
}
END_TEST

/* ---- bad mask files -------------------------------------------------------------- */

static void write_bad_masks(int i, const char *path, uint64_t *s) {
  hid_t f = new_file(path, i == 0 ? "bsa-trace" : "bsa-masks", 1);
  hid_t g = new_group(f, "r");
  int64_t H = 2, MB = 3, NB = 2, Sq = 6, Sk = irange(s, 4, 9);
  uint8_t map[12];
  for (int j = 0; j < 12; j++) map[j] = (uint8_t)irange(s, 0, 1);
  int32_t rs[6] = {2, 0, 4, 1, 1, 4};
  int32_t cs[4] = {(int32_t)Sk - 1, 1, 1, (int32_t)Sk - 1};
  int32_t qp[12] = {5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5};
  int64_t md[3] = {H, MB, NB}, rd[2] = {H, MB}, cd[2] = {H, NB}, pd[2] = {H, Sq};
  switch (i) {
    case 2: rs[4] = 2; break;                    /* head 1 sums to 7 */
    case 3: rs[0] = -1; rs[2] = 7; break;        /* negative size */
    case 4: qp[9] = 4; break;                    /* token 4 twice */
    case 5: qp[0] = 6; break;                    /* out of range */
    case 6: a_i64(g, "qo_len", 7); break;        /* sizes sum to 6 */
    default: break;
  }
  if (i != 1) ds(g, "block_mask_map", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, md, map);
  if (i == 7) {
    int64_t bad[2] = {H, MB + 1};
    int32_t rs2[8] = {2, 0, 4, 0, 1, 1, 4, 0};
    ds(g, "block_row_sz", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, bad, rs2);
  } else {
    ds(g, "block_row_sz", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, rd, rs);
  }
  if (i != 8) ds(g, "block_col_sz", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, cd, cs);
  ds(g, "q_perm", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, pd, qp);
  if (i == 9) {
    int64_t sd[3] = {H, NB, MB};
    float sc[12] = {0};
    ds(g, "block_scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, sd, sc);
  }
  if (i == 10) {
    float fm[12] = {0};
    H5Ldelete(g, "block_mask_map", H5P_DEFAULT);
    ds(g, "block_mask_map", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, md, fm);
  }
  H5Gclose(g);
  H5Fclose(f);
}

static const bad_case BAD_MASKS[] = {
    {"a trace file", 1, BSA_ERR_FORMAT, {"format = \"bsa-trace\"", "\"bsa-masks\"", NULL}},
    {"no block_mask_map", 0, BSA_ERR_FORMAT, {"record 'r'", "missing dataset 'block_mask_map'", NULL}},
    {"sums differ", 0, BSA_ERR_FORMAT, {"record 'r'", "block_row_sz of head 1 sums to 7", "head 0 sums to 6"}},
    {"negative size", 0, BSA_ERR_FORMAT, {"record 'r'", "block_row_sz[0, 0] = -1", NULL}},
    {"perm duplicate", 0, BSA_ERR_FORMAT, {"record 'r'", "q_perm is not a permutation", "token 4 appears twice"}},
    {"perm range", 0, BSA_ERR_FORMAT, {"record 'r'", "q_perm is not a permutation", "outside [0, 6)"}},
    {"qo_len attribute", 0, BSA_ERR_FORMAT, {"record 'r'", "sums to 6 but attribute qo_len = 7", NULL}},
    {"row sizes shape", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'block_row_sz' has shape [2, 4]", "[2, 3]"}},
    {"no block_col_sz", 0, BSA_ERR_FORMAT, {"record 'r'", "missing dataset 'block_col_sz'", NULL}},
    {"scores shape", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'block_scores' has shape [2, 2, 3]", NULL}},
    {"float map", 0, BSA_ERR_FORMAT, {"record 'r'", "dataset 'block_mask_map' has dtype float32", NULL}},
};

START_TEST(test_masks_bad_files) {
  uint64_t s = fresh_seed();
  make_tmpdir();
  const bad_case *c = &BAD_MASKS[_i];
  const char *path = tpath("badm.h5");
  write_bad_masks(_i, path, &s);
  bsa_masks *m = (bsa_masks *)0x1;
  bsa_status st = bsa_masks_open(path, &m);
  if (c->at_open) {
    ck_assert_ptr_null(m);
    expect_failure(c, st, path);
  } else {
    ck_assert_msg(st == BSA_OK, "%s: open failed: %s", c->what, bsa_last_error());
    bsa_mask_record *r = (bsa_mask_record *)0x1;
    st = bsa_masks_read_record(m, "r", &r);
    ck_assert_ptr_null(r);
    expect_failure(c, st, path);
    bsa_masks_close(m);
  }
  remove_tmpdir();
}
END_TEST

/* ---- files that are not HDF5 ----------------------------------------------------- */

START_TEST(test_not_hdf5) {
  uint64_t seed = fresh_seed(), s = seed;
  make_tmpdir();
  bsa_trace *t = (bsa_trace *)0x1;
  /* Missing. */
  const char *p = tpath("missing.h5");
  ck_assert_int_eq(bsa_trace_open(p, &t), BSA_ERR_IO);
  ck_assert_ptr_null(t);
  ASSERT_MSG_HAS(p);
  ASSERT_MSG_HAS("No such file");
  /* A folder. */
  ck_assert_int_eq(bsa_trace_open(tmpdir, &t), BSA_ERR_IO);
  ASSERT_MSG_HAS("folder");
  /* Empty. */
  p = tpath("empty.h5");
  fclose(fopen(p, "w"));
  ck_assert_int_eq(bsa_trace_open(p, &t), BSA_ERR_FORMAT);
  ASSERT_MSG_HAS(p);
  ASSERT_MSG_HAS("empty");
  /* Text. */
  p = tpath("text.h5");
  FILE *f = fopen(p, "w");
  for (int i = 0; i < 2000; i++) fputc('a' + (int)irange(&s, 0, 25), f);
  fclose(f);
  ck_assert_int_eq(bsa_trace_open(p, &t), BSA_ERR_FORMAT);
  ASSERT_MSG_HAS(p);
  ASSERT_MSG_HAS("not an HDF5 file");
  bsa_masks *m = (bsa_masks *)0x1;
  ck_assert_int_eq(bsa_masks_open(p, &m), BSA_ERR_FORMAT);
  ck_assert_ptr_null(m);
  ASSERT_MSG_HAS("not an HDF5 file");
  /* Truncated: a good trace cut at a random point past the signature. */
  p = tpath("good.h5");
  bsa_trace_record *r = random_trace_record(&s, "r", 1, 0);
  bsa_trace_writer *w;
  ck_assert_int_eq(bsa_trace_writer_create(p, BSA_DTYPE_F32, NULL, NULL, &w), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_add(w, r), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_commit(w), BSA_OK);
  long len;
  unsigned char *bytes = slurp(p, &len);
  long cut = 16 + (long)(unit(&s) * (double)(len - 17));
  const char *tp = tpath("truncated.h5");
  f = fopen(tp, "wb");
  fwrite(bytes, 1, (size_t)cut, f);
  fclose(f);
  bsa_status st = bsa_trace_open(tp, &t);
  if (st == BSA_OK) { /* cut inside the data: the read must fail instead */
    bsa_trace_record *o = NULL;
    st = bsa_trace_read_record(t, "r", &o);
    bsa_trace_close(t);
    ck_assert_ptr_null(o);
  } else {
    ck_assert_ptr_null(t);
  }
  ck_assert_msg(st == BSA_ERR_FORMAT || st == BSA_ERR_IO, "seed %llu cut %ld: status %d",
                (unsigned long long)seed, cut, st);
  ASSERT_MSG_HAS(tp);
  ASSERT_MSG_HAS("truncated");
  free(bytes);
  bsa_trace_record_free(r);
  remove_tmpdir();
}
END_TEST

/* ---- writers that fail ------------------------------------------------------------- */

START_TEST(test_failed_write_keeps_file) {
  uint64_t seed = fresh_seed(), s = seed;
  make_tmpdir();
  const char *p = tpath("keep.h5");
  bsa_trace_record *r = random_trace_record(&s, "good", 1, 0);
  bsa_trace_writer *w;
  ck_assert_int_eq(bsa_trace_writer_create(p, BSA_DTYPE_F32, "m", "s", &w), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_add(w, r), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_commit(w), BSA_OK);
  long len0, len1;
  unsigned char *before = slurp(p, &len0);

  /* Invalid records are refused before anything is written. */
  ck_assert_int_eq(bsa_trace_writer_create(p, BSA_DTYPE_F16, NULL, NULL, &w), BSA_OK);
  bsa_trace_record bad = *r;
  bad.num_kv_heads = 2;
  bad.num_qo_heads = 3;
  ck_assert_int_eq(bsa_trace_writer_add(w, &bad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS(p);
  ASSERT_MSG_HAS("num_qo_heads = 3");
  bad = *r;
  bad.q = malloc(sizeof(float) * (size_t)(r->num_qo_heads * r->qo_len * r->head_dim));
  memcpy(bad.q, r->q, sizeof(float) * (size_t)(r->num_qo_heads * r->qo_len * r->head_dim));
  bad.q[1] = 70000.0f; /* beyond float16 */
  ck_assert_int_eq(bsa_trace_writer_add(w, &bad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("does not fit float16");
  ASSERT_MSG_HAS("q[");
  bad.q[1] = NAN;
  ck_assert_int_eq(bsa_trace_writer_add(w, &bad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("not finite");
  free(bad.q);
  bad = *r;
  bad.name = "a/b";
  ck_assert_int_eq(bsa_trace_writer_add(w, &bad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("'a/b'");
  bad = *r;
  bad.causal = 3;
  ck_assert_int_eq(bsa_trace_writer_add(w, &bad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("causal = 3");
  bsa_trace_writer_abort(w);
  unsigned char *after = slurp(p, &len1);
  ck_assert_int_eq(len0, len1);
  ck_assert_mem_eq(before, after, (size_t)len0);
  ck_assert_int_eq(count_temporaries(), 0);
  free(after);

  /* A valid record, then a duplicate: the duplicate is refused, the writer
   * still commits the valid one. */
  ck_assert_int_eq(bsa_trace_writer_create(p, BSA_DTYPE_F32, NULL, NULL, &w), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_add(w, r), BSA_OK);
  ck_assert_int_eq(bsa_trace_writer_add(w, r), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("already added");
  bsa_trace_writer_abort(w);
  after = slurp(p, &len1);
  ck_assert_mem_eq(before, after, (size_t)len0);
  free(after);

  /* Masks: sizes that do not sum, a broken permutation. */
  const char *mp = tpath("keepm.h5");
  bsa_mask_record *mr = random_mask_record(&s, "m0");
  bsa_masks_writer *mw;
  ck_assert_int_eq(bsa_masks_writer_create(mp, "oracle", "{}", p, "", &mw), BSA_OK);
  ck_assert_int_eq(bsa_masks_writer_add(mw, mr), BSA_OK);
  ck_assert_int_eq(bsa_masks_writer_commit(mw), BSA_OK);
  long mlen0, mlen1;
  unsigned char *mbefore = slurp(mp, &mlen0);
  ck_assert_int_eq(bsa_masks_writer_create(mp, "oracle", "{}", p, "", &mw), BSA_OK);
  bsa_mask_record mbad = *mr;
  mbad.name = "m1";
  mbad.block_row_sz = malloc(sizeof(int32_t) * (size_t)(mr->num_kv_heads * mr->num_block_rows));
  memcpy(mbad.block_row_sz, mr->block_row_sz,
         sizeof(int32_t) * (size_t)(mr->num_kv_heads * mr->num_block_rows));
  mbad.block_row_sz[0] += 1;
  ck_assert_int_eq(bsa_masks_writer_add(mw, &mbad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS(mp);
  ASSERT_MSG_HAS("record 'm1'");
  ASSERT_MSG_HAS("block_row_sz of head 0 sums to");
  free(mbad.block_row_sz);
  mbad = *mr;
  mbad.name = "m2";
  int32_t *qp = malloc(sizeof(int32_t) * (size_t)(mr->num_kv_heads * mr->qo_len));
  for (int64_t i = 0; i < mr->num_kv_heads * mr->qo_len; i++) qp[i] = 0; /* all token 0 */
  mbad.q_perm = qp;
  if (mr->qo_len > 1) {
    ck_assert_int_eq(bsa_masks_writer_add(mw, &mbad), BSA_ERR_INVALID_ARG);
    ASSERT_MSG_HAS("q_perm is not a permutation");
  }
  free(qp);
  mbad = *mr;
  mbad.name = "m3";
  uint8_t *map = malloc((size_t)(mr->num_kv_heads * mr->num_block_rows * mr->num_block_cols));
  memcpy(map, mr->block_mask_map, (size_t)(mr->num_kv_heads * mr->num_block_rows * mr->num_block_cols));
  map[0] = 2;
  mbad.block_mask_map = map;
  ck_assert_int_eq(bsa_masks_writer_add(mw, &mbad), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("block_mask_map[0, 0, 0] = 2");
  free(map);
  bsa_masks_writer_abort(mw);
  unsigned char *mafter = slurp(mp, &mlen1);
  ck_assert_int_eq(mlen0, mlen1);
  ck_assert_mem_eq(mbefore, mafter, (size_t)mlen0);
  ck_assert_int_eq(count_temporaries(), 0);

  /* A folder that does not exist: the writer cannot even start. */
  const char *nowhere = tpath("no/such/folder/t.h5");
  w = (bsa_trace_writer *)0x1;
  ck_assert_int_eq(bsa_trace_writer_create(nowhere, BSA_DTYPE_F32, NULL, NULL, &w), BSA_ERR_IO);
  ck_assert_ptr_null(w);
  ASSERT_MSG_HAS(nowhere);
  ck_assert_int_eq(bsa_trace_writer_create(p, BSA_DTYPE_BF16, NULL, NULL, &w), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("bf16");

  free(before);
  free(mbefore);
  free(mafter);
  bsa_trace_record_free(r);
  bsa_mask_record_free(mr);
  remove_tmpdir();
}
END_TEST

/* ---- synthetic traces ------------------------------------------------------------- */

static bsa_trace_synth_params small_params(uint64_t seed) {
  bsa_trace_synth_params p;
  bsa_trace_synth_defaults(&p);
  p.seed = seed;
  p.seq_len = 256;
  p.head_dim = 32;
  p.num_records = 3;
  return p;
}

START_TEST(test_synth_deterministic) {
  uint64_t seed = fresh_seed();
  bsa_trace_synth_params p = small_params(seed);
  bsa_trace_record *a, *b, *c, *d;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 1, &a), BSA_OK);
  ck_assert_int_eq(bsa_trace_synth_record(&p, 1, &b), BSA_OK);
  size_t nq = sizeof(float) * (size_t)(p.num_qo_heads * p.seq_len * p.head_dim);
  size_t nk = sizeof(float) * (size_t)(p.num_kv_heads * p.seq_len * p.head_dim);
  ck_assert_mem_eq(a->q, b->q, nq);
  ck_assert_mem_eq(a->k, b->k, nk);
  ck_assert_mem_eq(a->v, b->v, nk);
  ck_assert_mem_eq(a->cluster_id, b->cluster_id, sizeof(int32_t) * (size_t)(p.num_kv_heads * p.seq_len));
  ck_assert_str_eq(a->name, "layer01");
  ck_assert_int_eq(a->layer, 1);
  /* A record does not depend on how many records the trace has. */
  bsa_trace_synth_params p2 = p;
  p2.num_records = 7;
  ck_assert_int_eq(bsa_trace_synth_record(&p2, 1, &c), BSA_OK);
  ck_assert_mem_eq(a->q, c->q, nq);
  /* Another seed, another record. */
  p2.seed = seed + 1;
  ck_assert_int_eq(bsa_trace_synth_record(&p2, 1, &d), BSA_OK);
  ck_assert_int_ne(memcmp(a->q, d->q, nq), 0);
  ck_assert_int_ne(memcmp(a->cluster_id, d->cluster_id, sizeof(int32_t) * (size_t)p.seq_len), 0);
  bsa_trace_record_free(a);
  bsa_trace_record_free(b);
  bsa_trace_record_free(c);
  bsa_trace_record_free(d);

  /* Files: same seed, same bytes. */
  make_tmpdir();
  p.num_records = 2;
  ck_assert_int_eq(bsa_trace_synth_write(tpath("s1.h5"), &p, BSA_DTYPE_F16), BSA_OK);
  ck_assert_int_eq(bsa_trace_synth_write(tpath("s2.h5"), &p, BSA_DTYPE_F16), BSA_OK);
  long l1, l2;
  unsigned char *b1 = slurp(tpath("s1.h5"), &l1), *b2 = slurp(tpath("s2.h5"), &l2);
  ck_assert_int_eq(l1, l2);
  ck_assert_mem_eq(b1, b2, (size_t)l1);
  free(b1);
  free(b2);
  bsa_trace *t;
  ck_assert_int_eq(bsa_trace_open(tpath("s1.h5"), &t), BSA_OK);
  ck_assert_int_eq(bsa_trace_num_records(t), 2);
  ck_assert_str_eq(bsa_trace_model(t), "synthetic");
  bsa_trace_record *r;
  ck_assert_int_eq(bsa_trace_read_record(t, "layer00", &r), BSA_OK);
  ck_assert_int_eq(r->num_clusters, p.num_clusters);
  ck_assert_ptr_nonnull(r->cluster_id);
  bsa_trace_record_free(r);
  bsa_trace_close(t);
  remove_tmpdir();
}
END_TEST

/* Attention probabilities of query head h, [S, S], in double. */
static double *attention_probs(const bsa_trace_record *r, int h) {
  int64_t S = r->qo_len, D = r->head_dim;
  int kh = h / (r->num_qo_heads / r->num_kv_heads);
  const float *q = r->q + (int64_t)h * S * D, *k = r->k + (int64_t)kh * S * D;
  double *p = malloc(sizeof(double) * (size_t)(S * S));
  double sc = 1.0 / sqrt((double)D);
  for (int64_t i = 0; i < S; i++) {
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < S; j++) {
      double d = 0;
      for (int64_t e = 0; e < D; e++) d += (double)q[i * D + e] * k[j * D + e];
      d *= sc;
      if (r->causal && j > i) d = -INFINITY;
      p[i * S + j] = d;
      if (d > mx) mx = d;
    }
    for (int64_t j = 0; j < S; j++) sum += (p[i * S + j] = exp(p[i * S + j] - mx));
    for (int64_t j = 0; j < S; j++) p[i * S + j] /= sum;
  }
  return p;
}

START_TEST(test_synth_structure) {
  /* _i: 0 GQA not causal, 1 GQA causal, 2 MHA not causal. */
  uint64_t seed = fresh_seed();
  bsa_trace_synth_params p;
  bsa_trace_synth_defaults(&p);
  p.seed = seed;
  p.seq_len = 512;
  p.head_dim = 32 << (_i % 2); /* 32 or 64 */
  p.causal = _i == 1;
  p.num_qo_heads = 4;
  p.num_kv_heads = _i == 2 ? 4 : 2;
  p.num_records = 2;
  bsa_trace_record *r;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 1, &r), BSA_OK);
  const int64_t S = p.seq_len, W = p.window;
  int G = p.num_qo_heads / p.num_kv_heads;
  int64_t *top_cols = malloc(sizeof(int64_t) * (size_t)p.num_qo_heads * (size_t)p.num_stripes);
  for (int h = 0; h < p.num_qo_heads; h++) {
    double *P = attention_probs(r, h);
    const int32_t *cid = r->cluster_id + (int64_t)(h / G) * S;
    /* Mass per key of each kind, over (query, visible key) pairs: sinks,
     * keys within the window, same-cluster keys outside it, and the rest. */
    double m_sink = 0, m_local = 0, m_same = 0, m_other = 0;
    double n_sink = 0, n_local = 0, n_same = 0, n_other = 0;
    double *col = calloc((size_t)S, sizeof(double));
    for (int64_t i = 0; i < S; i++) {
      int64_t vis = r->causal ? i + 1 : S;
      for (int64_t j = 0; j < vis; j++) {
        double x = P[i * S + j];
        col[j] += x / S;
        if (j < p.num_sinks) {
          m_sink += x;
          n_sink++;
        } else if (llabs(i - j) < W) {
          m_local += x;
          n_local++;
        } else if (cid[j] == cid[i]) {
          m_same += x;
          n_same++;
        } else {
          m_other += x;
          n_other++;
        }
      }
    }
    /* A key of each planted kind draws several times the attention of an
     * ordinary key (stripes, a few keys, hardly move the "other" mean). */
    double other = m_other / n_other;
    ck_assert_msg(m_sink / n_sink > 5 * other, "seed %llu head %d: sink key %.3g, other key %.3g",
                  (unsigned long long)seed, h, m_sink / n_sink, other);
    ck_assert_msg(m_local / n_local > 3 * other,
                  "seed %llu head %d: local key %.3g, other key %.3g", (unsigned long long)seed,
                  h, m_local / n_local, other);
    ck_assert_msg(m_same / n_same > 3 * other,
                  "seed %llu head %d: same-cluster key %.3g, other key %.3g",
                  (unsigned long long)seed, h, m_same / n_same, other);
    ck_assert_msg(m_sink / S > 0.02, "seed %llu head %d: sinks hold %.4f of the mass",
                  (unsigned long long)seed, h, m_sink / S);
    /* Stripes: the columns (past the sinks) with the most mass are the
     * same few positions in every head of the record. */
    for (int k = 0; k < p.num_stripes; k++) {
      int64_t best = -1;
      for (int64_t j = p.num_sinks; j < S; j++) {
        int taken = 0;
        for (int m = 0; m < k; m++) taken |= top_cols[h * p.num_stripes + m] == j;
        if (!taken && (best < 0 || col[j] > col[best])) best = j;
      }
      top_cols[h * p.num_stripes + k] = best;
    }
    /* The clusters are scattered: many more runs than clusters.  Runs of
     * about 8 tokens over 512 make about 56 (a neighbour repeats the
     * cluster one time in 8), standard deviation about 7; 4 x 8 = 32
     * failed about once in 25 suite runs (seed 3952060070352207215: 31),
     * 2 x 8 = 16 is over five deviations away. */
    int64_t runs = 1;
    for (int64_t j = 1; j < S; j++) runs += cid[j] != cid[j - 1];
    ck_assert_msg(runs > 2 * p.num_clusters, "seed %llu: %lld runs", (unsigned long long)seed,
                  (long long)runs);
    free(col);
    free(P);
  }
  if (!r->causal) { /* causal mass piles onto early columns; skip there */
    int common = 0;
    for (int k = 0; k < p.num_stripes; k++) {
      int everywhere = 1;
      for (int h = 1; h < p.num_qo_heads; h++) {
        int found = 0;
        for (int m = 0; m < p.num_stripes; m++)
          found |= top_cols[h * p.num_stripes + m] == top_cols[k];
        everywhere &= found;
      }
      common += everywhere;
    }
    ck_assert_msg(common >= p.num_stripes / 2,
                  "seed %llu: only %d of the %d strongest columns are shared by all heads",
                  (unsigned long long)seed, common, p.num_stripes);
  }
  /* Queries of the same planted cluster point the same way: after removing
   * the mean query (the sink and stripe directions all queries share), the
   * mean cosine within clusters beats the mean cosine across clusters. */
  {
    int64_t D = r->head_dim;
    const int32_t *cid = r->cluster_id;
    double *q = calloc((size_t)(S * D), sizeof(double)), *mean = calloc((size_t)D, sizeof(double));
    for (int64_t i = 0; i < S * D; i++) mean[i % D] += r->q[i] / S;
    for (int64_t i = 0; i < S * D; i++) q[i] = r->q[i] - mean[i % D];
    double within = 0, across = 0;
    int64_t nw = 0, na = 0;
    for (int64_t i = 0; i < S; i += 3)
      for (int64_t j = i + W; j < S; j += 5) {
        double d = 0, ni = 0, nj = 0;
        for (int64_t e = 0; e < D; e++) {
          d += q[i * D + e] * q[j * D + e];
          ni += q[i * D + e] * q[i * D + e];
          nj += q[j * D + e] * q[j * D + e];
        }
        double cs = d / sqrt(ni * nj);
        if (cid[i] == cid[j]) within += cs, nw++;
        else across += cs, na++;
      }
    ck_assert_msg(within / nw > across / na + 0.15, "seed %llu: cosine within %.3f across %.3f",
                  (unsigned long long)seed, within / nw, across / na);
    free(q);
    free(mean);
  }
  free(top_cols);
  bsa_trace_record_free(r);
}
END_TEST

START_TEST(test_synth_params) {
  bsa_trace_synth_params p;
  bsa_trace_synth_defaults(&p);
  bsa_trace_record *r = (bsa_trace_record *)0x1;
  p.num_kv_heads = 3;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 0, &r), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_null(r);
  ASSERT_MSG_HAS("num_qo_heads = 4");
  ASSERT_MSG_HAS("num_kv_heads = 3");
  bsa_trace_synth_defaults(&p);
  p.head_dim = 4;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 0, &r), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("head_dim = 4");
  bsa_trace_synth_defaults(&p);
  p.num_sinks = 1000;
  p.num_stripes = 100;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 0, &r), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("num_sinks = 1000");
  bsa_trace_synth_defaults(&p);
  ck_assert_int_eq(bsa_trace_synth_record(&p, 4, &r), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("record index 4");
  p.num_clusters = 0;
  ck_assert_int_eq(bsa_trace_synth_record(&p, 0, &r), BSA_ERR_INVALID_ARG);
  ASSERT_MSG_HAS("num_clusters = 0");
}
END_TEST

static Suite *trace_suite(void) {
  Suite *s = suite_create("trace");
  TCase *tc = tcase_create("io");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_trace_roundtrip, 0, 2);
  tcase_add_test(tc, test_masks_roundtrip);
  tcase_add_test(tc, test_trace_foreign_types);
  tcase_add_loop_test(tc, test_trace_bad_files, 0,
                      (int)(sizeof BAD_TRACES / sizeof BAD_TRACES[0]));
  tcase_add_loop_test(tc, test_masks_bad_files, 0, (int)(sizeof BAD_MASKS / sizeof BAD_MASKS[0]));
  tcase_add_test(tc, test_not_hdf5);
  tcase_add_test(tc, test_failed_write_keeps_file);
  suite_add_tcase(s, tc);
  TCase *ts = tcase_create("synth");
  tcase_set_timeout(ts, 120);
  tcase_add_test(ts, test_synth_deterministic);
  tcase_add_loop_test(ts, test_synth_structure, 0, 3);
  tcase_add_test(ts, test_synth_params);
  suite_add_tcase(s, ts);
  return s;
}

int main(void) {
  /* HDF5 must not print its error stack while we craft files. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  SRunner *sr = srunner_create(trace_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
