/*
 * maskgen/io_h5.c - HDF5 helpers for the trace and mask files (see io_h5.h).
 *
 * HDF5 keeps global state (its error stack and the automatic printing of
 * it) and the Debian build is not thread-safe, so every public entry point
 * of the I/O module runs under one recursive lock with printing turned off.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io_h5.h"

/* ---- lock and error printing ------------------------------------------- */

static pthread_mutex_t h5_lock;
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static _Thread_local int h5_depth;

static void h5_lock_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&h5_lock, &a);
  pthread_mutexattr_destroy(&a);
}

void bsa__h5_enter(bsa__h5_guard *g) {
  pthread_once(&h5_once, h5_lock_init);
  pthread_mutex_lock(&h5_lock);
  g->func = NULL;
  g->data = NULL;
  if (h5_depth++ == 0) {
    H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  }
}

void bsa__h5_leave(bsa__h5_guard *g) {
  if (--h5_depth == 0) {
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
  }
  pthread_mutex_unlock(&h5_lock);
}

static _Thread_local char h5_detail_buf[256];

/* H5E_WALK_UPWARD visits the innermost (most specific) error first. */
static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)data;
  if (n == 0 && e->desc) snprintf(h5_detail_buf, sizeof h5_detail_buf, "%s", e->desc);
  return 0;
}

const char *bsa__h5_detail(void) {
  h5_detail_buf[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, NULL);
  H5Eclear2(H5E_DEFAULT);
  return h5_detail_buf;
}

const char *bsa__h5_place(const bsa__h5_where *w, char *buf, size_t n) {
  if (w->record)
    snprintf(buf, n, "%s: record '%s'", w->file, w->record);
  else
    snprintf(buf, n, "%s", w->file);
  return buf;
}

#define PLACE(w) bsa__h5_place((w), place, sizeof place)

/* ---- opening ------------------------------------------------------------- */

bsa_status bsa__h5_open_read(const char *path, hid_t *out) {
  *out = -1;
  struct stat st;
  if (stat(path, &st) != 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot open: it is a folder, not a file", path);
  if (access(path, R_OK) != 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (st.st_size == 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: the file is empty (expected HDF5)", path);
  htri_t is = H5Fis_hdf5(path);
  if (is < 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot read the file (HDF5: %s)", path,
                     bsa__h5_detail());
  if (is == 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: not an HDF5 file (no HDF5 signature); traces and masks are "
                     "HDF5 files",
                     path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    const char *d = bsa__h5_detail();
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: cannot be read as HDF5: the file is truncated or damaged "
                     "(%lld bytes; HDF5: %s)",
                     path, (long long)st.st_size, d);
  }
  *out = f;
  return BSA_OK;
}

bsa_status bsa__h5_check_format(hid_t file, const char *path, const char *expect) {
  bsa__h5_where w = {path, NULL};
  char *fmt = NULL;
  int present = 0;
  bsa_status s = bsa__h5_attr_string(file, "format", &w, &fmt, &present);
  if (s != BSA_OK) return s;
  if (!present)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: no root attribute 'format'; expected format = \"%s\" "
                     "(docs/formats.md)",
                     path, expect);
  if (strcmp(fmt, expect) != 0) {
    bsa__fail(NULL, BSA_ERR_FORMAT, "%s: root attribute format = \"%s\"; expected \"%s\"", path,
              fmt, expect);
    free(fmt);
    return BSA_ERR_FORMAT;
  }
  free(fmt);
  int64_t ver = 0;
  s = bsa__h5_attr_int(file, "format_version", &w, &ver, &present);
  if (s != BSA_OK) return s;
  if (!present)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: no root attribute 'format_version'; expected format_version = 1", path);
  if (ver != 1)
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: format_version = %lld; this bsa reads version 1 of \"%s\"", path,
                     (long long)ver, expect);
  return BSA_OK;
}

typedef struct name_list {
  char **names;
  int64_t count;
  int64_t cap;
  int oom;
} name_list;

static herr_t list_cb(hid_t grp, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  name_list *l = data;
  hid_t obj = H5Oopen(grp, name, H5P_DEFAULT);
  if (obj < 0) { /* a dangling link: not a record */
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  int is_group = H5Iget_type(obj) == H5I_GROUP;
  H5Oclose(obj);
  if (!is_group) return 0;
  if (l->count == l->cap) {
    int64_t cap = l->cap ? 2 * l->cap : 16;
    char **n = realloc(l->names, sizeof(char *) * (size_t)cap);
    if (!n) {
      l->oom = 1;
      return 1;
    }
    l->names = n;
    l->cap = cap;
  }
  l->names[l->count] = strdup(name);
  if (!l->names[l->count]) {
    l->oom = 1;
    return 1;
  }
  l->count++;
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

bsa_status bsa__h5_list_records(hid_t file, const char *path, char ***names, int64_t *count) {
  *names = NULL;
  *count = 0;
  htri_t ex = H5Lexists(file, "records", H5P_DEFAULT);
  if (ex <= 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: no group /records (docs/formats.md)", path);
  hid_t grp = H5Oopen(file, "records", H5P_DEFAULT);
  if (grp < 0 || H5Iget_type(grp) != H5I_GROUP) {
    if (grp >= 0) H5Oclose(grp);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: /records is not a group", path);
  }
  name_list l = {0};
  hsize_t idx = 0;
  herr_t r = H5Literate(grp, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &l);
  H5Oclose(grp);
  if (l.oom || r < 0) {
    bsa__h5_free_names(l.names, l.count);
    if (l.oom) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory listing /records", path);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot list /records (HDF5: %s)", path,
                     bsa__h5_detail());
  }
  if (l.count > 1) qsort(l.names, (size_t)l.count, sizeof(char *), cmp_names);
  *names = l.names;
  *count = l.count;
  return BSA_OK;
}

void bsa__h5_free_names(char **names, int64_t count) {
  if (!names) return;
  for (int64_t i = 0; i < count; i++) free(names[i]);
  free(names);
}

/* Lists up to a few record names for a "not found" message. */
static void some_names(char **names, int64_t count, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = '\0';
  for (int64_t i = 0; i < count && i < 6 && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", names[i]);
  if (count > 6 && off < n) snprintf(buf + off, n - off, ", ...");
}

bsa_status bsa__record_not_found(const char *path, const char *name, char **names, int64_t count) {
  char list[200];
  some_names(names, count, list, sizeof list);
  return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: no record '%s' (the file has %lld record%s%s%s)",
                   path, name, (long long)count, count == 1 ? "" : "s", count ? ": " : "", list);
}

/* Opens /records/<name> after checking that the name is one of the listed
 * records. */
bsa_status bsa__h5_open_record(hid_t file, const char *path, char **names, int64_t count,
                               const char *name, hid_t *grp) {
  *grp = -1;
  int found = 0;
  for (int64_t i = 0; i < count && !found; i++) found = !strcmp(names[i], name);
  if (!found) return bsa__record_not_found(path, name, names, count);
  hid_t rg = H5Gopen2(file, "records", H5P_DEFAULT);
  hid_t g = rg >= 0 ? H5Gopen2(rg, name, H5P_DEFAULT) : -1;
  if (rg >= 0) H5Gclose(rg);
  if (g < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: record '%s': cannot open the group (HDF5: %s)",
                     path, name, bsa__h5_detail());
  *grp = g;
  return BSA_OK;
}

/* ---- attributes ---------------------------------------------------------- */

/* Opens attribute name; *attr = -1 when it does not exist.  Checks that it
 * holds exactly one element. */
static bsa_status attr_open(hid_t obj, const char *name, const bsa__h5_where *w, hid_t *attr) {
  char place[400];
  *attr = -1;
  htri_t ex = H5Aexists(obj, name);
  if (ex < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot look up attribute '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  if (ex == 0) return BSA_OK;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot open attribute '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  hid_t sp = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  if (n != 1) {
    H5Aclose(a);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: attribute '%s' holds %lld values; expected one",
                     PLACE(w), name, (long long)n);
  }
  *attr = a;
  return BSA_OK;
}

bsa_status bsa__h5_attr_string(hid_t obj, const char *name, const bsa__h5_where *w, char **out,
                               int *present) {
  char place[400];
  *out = NULL;
  *present = 0;
  hid_t a;
  bsa_status s = attr_open(obj, name, w, &a);
  if (s != BSA_OK || a < 0) return s;
  hid_t ft = H5Aget_type(a);
  if (H5Tget_class(ft) != H5T_STRING) {
    H5Tclose(ft);
    H5Aclose(a);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: attribute '%s' is not a string", PLACE(w), name);
  }
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_cset(mt, H5Tget_cset(ft));
  char *res = NULL;
  herr_t r;
  if (H5Tis_variable_str(ft) > 0) {
    char *v = NULL;
    H5Tset_size(mt, H5T_VARIABLE);
    r = H5Aread(a, mt, &v);
    if (r >= 0) {
      res = strdup(v ? v : "");
      H5free_memory(v);
    }
  } else {
    size_t n = H5Tget_size(ft);
    H5Tset_size(mt, n);
    H5Tset_strpad(mt, H5Tget_strpad(ft));
    res = calloc(n + 1, 1);
    r = res ? H5Aread(a, mt, res) : 0;
    if (res) {
      /* Fixed strings are padded with NULs or spaces. */
      size_t len = strnlen(res, n);
      while (len > 0 && res[len - 1] == ' ') len--;
      res[len] = '\0';
    }
  }
  H5Tclose(mt);
  H5Tclose(ft);
  H5Aclose(a);
  if (r < 0) {
    free(res);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot read attribute '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  }
  if (!res) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", PLACE(w));
  *out = res;
  *present = 1;
  return BSA_OK;
}

/* Reads one integer element of an enum (h5py's bool) through its base type. */
static herr_t read_enum_int(hid_t a, hid_t ft, int is_attr, int64_t *out, int64_t n) {
  hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
  hid_t base = H5Tget_super(ft);
  size_t sz = H5Tget_size(mt);
  int sgn = H5Tget_sign(base) == H5T_SGN_2;
  unsigned char *raw = malloc(sz * (size_t)n);
  herr_t r = -1;
  if (raw) {
    r = is_attr ? H5Aread(a, mt, raw) : H5Dread(a, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
    for (int64_t i = 0; r >= 0 && i < n; i++) {
      const unsigned char *p = raw + (size_t)i * sz;
      int64_t v = 0;
      switch (sz) {
        case 1:
          v = sgn ? *(const int8_t *)p : *(const uint8_t *)p;
          break;
        case 2: {
          int16_t x;
          memcpy(&x, p, 2);
          v = sgn ? x : (uint16_t)x;
        } break;
        case 4: {
          int32_t x;
          memcpy(&x, p, 4);
          v = sgn ? (int64_t)x : (int64_t)(uint32_t)x;
        } break;
        default:
          memcpy(&v, p, 8);
          break;
      }
      out[i] = v;
    }
    free(raw);
  }
  H5Tclose(base);
  H5Tclose(mt);
  return r;
}

bsa_status bsa__h5_attr_int(hid_t obj, const char *name, const bsa__h5_where *w, int64_t *out,
                            int *present) {
  char place[400];
  *present = 0;
  hid_t a;
  bsa_status s = attr_open(obj, name, w, &a);
  if (s != BSA_OK || a < 0) return s;
  hid_t ft = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(ft);
  herr_t r = -1;
  int64_t v = 0;
  s = BSA_OK;
  if (cls == H5T_INTEGER) {
    r = H5Aread(a, H5T_NATIVE_INT64, &v);
  } else if (cls == H5T_ENUM) {
    r = read_enum_int(a, ft, 1, &v, 1);
  } else if (cls == H5T_FLOAT) {
    double d = 0;
    r = H5Aread(a, H5T_NATIVE_DOUBLE, &d);
    if (r >= 0 && (d != floor(d) || fabs(d) > 9e15))
      s = bsa__fail(NULL, BSA_ERR_FORMAT, "%s: attribute '%s' = %g is not an integer", PLACE(w),
                    name, d);
    v = (int64_t)d;
  } else {
    s = bsa__fail(NULL, BSA_ERR_FORMAT, "%s: attribute '%s' is not a number", PLACE(w), name);
  }
  H5Tclose(ft);
  H5Aclose(a);
  if (s != BSA_OK) return s;
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot read attribute '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  *out = v;
  *present = 1;
  return BSA_OK;
}

bsa_status bsa__h5_attr_double(hid_t obj, const char *name, const bsa__h5_where *w, double *out,
                               int *present) {
  char place[400];
  *present = 0;
  hid_t a;
  bsa_status s = attr_open(obj, name, w, &a);
  if (s != BSA_OK || a < 0) return s;
  hid_t ft = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(ft);
  H5Tclose(ft);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    H5Aclose(a);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: attribute '%s' is not a number", PLACE(w), name);
  }
  double d = 0;
  herr_t r = H5Aread(a, H5T_NATIVE_DOUBLE, &d);
  H5Aclose(a);
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot read attribute '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  *out = d;
  *present = 1;
  return BSA_OK;
}

/* Replaces an existing attribute of the same name (records are written
 * once, but the root attributes may be set again). */
static hid_t attr_create(hid_t obj, const char *name, hid_t type, hid_t space) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  return H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
}

bsa_status bsa__h5_write_attr_string(hid_t obj, const char *name, const char *value,
                                     const char *path) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = attr_create(obj, name, t, sp);
  const char *v = value ? value : "";
  herr_t r = a >= 0 ? H5Awrite(a, t, &v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot write attribute '%s' (HDF5: %s)", path, name,
                     bsa__h5_detail());
  return BSA_OK;
}

static bsa_status write_attr_num(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                                 const void *v, const char *path) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = attr_create(obj, name, ftype, sp);
  herr_t r = a >= 0 ? H5Awrite(a, mtype, v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot write attribute '%s' (HDF5: %s)", path, name,
                     bsa__h5_detail());
  return BSA_OK;
}

bsa_status bsa__h5_write_attr_int(hid_t obj, const char *name, int64_t value, const char *path) {
  return write_attr_num(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, path);
}

bsa_status bsa__h5_write_attr_double(hid_t obj, const char *name, double value, const char *path) {
  return write_attr_num(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, path);
}

/* ---- datasets ------------------------------------------------------------ */

bsa_status bsa__h5_dataset_open(hid_t grp, const char *name, int required, const bsa__h5_where *w,
                                hid_t *out) {
  char place[400];
  *out = -1;
  htri_t ex = H5Lexists(grp, name, H5P_DEFAULT);
  if (ex <= 0) {
    if (!required) return BSA_OK;
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: missing dataset '%s'", PLACE(w), name);
  }
  hid_t obj = H5Oopen(grp, name, H5P_DEFAULT);
  if (obj < 0)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: cannot open dataset '%s' (HDF5: %s)", PLACE(w),
                     name, bsa__h5_detail());
  if (H5Iget_type(obj) != H5I_DATASET) {
    H5Oclose(obj);
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: '%s' is not a dataset", PLACE(w), name);
  }
  *out = obj;
  return BSA_OK;
}

/* Name of a numeric HDF5 type, numpy style. */
static const char *type_name(hid_t t) {
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  if (cls == H5T_FLOAT) {
    if (sz == 8) return "float64";
    if (sz == 4) return "float32";
    if (sz == 2) {
      size_t spos, epos, esize, mpos, msize;
      H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
      if (esize == 5 && msize == 10) return "float16";
      if (esize == 8 && msize == 7) return "bfloat16";
      return "float (16-bit, custom)";
    }
    return "float (other size)";
  }
  if (cls == H5T_INTEGER) {
    int s = H5Tget_sign(t) == H5T_SGN_2;
    switch (sz) {
      case 1:
        return s ? "int8" : "uint8";
      case 2:
        return s ? "int16" : "uint16";
      case 4:
        return s ? "int32" : "uint32";
      case 8:
        return s ? "int64" : "uint64";
    }
    return "integer (other size)";
  }
  if (cls == H5T_ENUM) return "bool/enum";
  if (cls == H5T_STRING) return "string";
  if (cls == H5T_COMPOUND) return "compound";
  return "non-numeric";
}

bsa_status bsa__h5_dataset_shape(hid_t dset, const char *name, const bsa__h5_where *w, int rank,
                                 bsa__h5_kind kind, const char *shape_doc, int64_t *dims,
                                 const char **dtype_name) {
  char place[400];
  hid_t sp = H5Dget_space(dset);
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t d[H5S_MAX_RANK];
  if (nd > 0) H5Sget_simple_extent_dims(sp, d, NULL);
  H5Sclose(sp);
  if (nd != rank) {
    char shape[128] = "";
    size_t off = 0;
    for (int i = 0; i < nd && off < sizeof shape - 24; i++)
      off += (size_t)snprintf(shape + off, sizeof shape - off, "%s%llu", i ? ", " : "",
                              (unsigned long long)d[i]);
    return bsa__fail(NULL, BSA_ERR_FORMAT,
                     "%s: dataset '%s' has rank %d (shape [%s]); expected rank %d %s", PLACE(w),
                     name, nd < 0 ? 0 : nd, shape, rank, shape_doc);
  }
  for (int i = 0; i < rank; i++) dims[i] = (int64_t)d[i];
  hid_t t = H5Dget_type(dset);
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  const char *tn = type_name(t);
  int ok;
  if (kind == BSA__H5_FLOAT) {
    ok = cls == H5T_FLOAT && (sz == 2 || sz == 4);
  } else {
    ok = cls == H5T_INTEGER;
    if (cls == H5T_ENUM) {
      hid_t base = H5Tget_super(t);
      ok = H5Tget_class(base) == H5T_INTEGER;
      H5Tclose(base);
      tn = "bool";
    }
  }
  H5Tclose(t);
  if (!ok)
    return bsa__fail(NULL, BSA_ERR_FORMAT, "%s: dataset '%s' has dtype %s; expected %s", PLACE(w),
                     name, tn, kind == BSA__H5_FLOAT ? "float16 or float32" : "an integer type");
  if (dtype_name) *dtype_name = tn;
  return BSA_OK;
}

bsa_status bsa__h5_dataset_read_f32(hid_t dset, const char *name, const bsa__h5_where *w,
                                    float *buf) {
  char place[400];
  if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    return bsa__fail(NULL, BSA_ERR_IO,
                     "%s: cannot read dataset '%s' (HDF5: %s); the file is truncated or damaged, "
                     "or it needs a compression filter this HDF5 lacks",
                     PLACE(w), name, bsa__h5_detail());
  return BSA_OK;
}

bsa_status bsa__h5_dataset_read_i64(hid_t dset, const char *name, const bsa__h5_where *w,
                                    int64_t *buf, int64_t n) {
  char place[400];
  hid_t t = H5Dget_type(dset);
  herr_t r;
  if (H5Tget_class(t) == H5T_ENUM)
    r = read_enum_int(dset, t, 0, buf, n);
  else
    r = H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Tclose(t);
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_IO,
                     "%s: cannot read dataset '%s' (HDF5: %s); the file is truncated or damaged, "
                     "or it needs a compression filter this HDF5 lacks",
                     PLACE(w), name, bsa__h5_detail());
  return BSA_OK;
}

/* IEEE binary16 little endian, built the way h5py builds numpy.float16:
 * HDF5 1.10 has no predefined half type. */
static hid_t half_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

bsa_status bsa__h5_write_dataset(hid_t grp, const char *name, int rank, const int64_t *dims,
                                 bsa__h5_store store, const void *data, const bsa__h5_where *w) {
  char place[400];
  hsize_t d[3] = {0, 0, 0}, chunk[3] = {1, 1, 1};
  size_t n = 1;
  if (rank < 2 || rank > 3)
    return bsa__fail(NULL, BSA_ERR_INTERNAL, "%s: dataset '%s': rank %d", PLACE(w), name, rank);
  for (int i = 0; i < rank; i++) {
    d[i] = (hsize_t)dims[i];
    n *= (size_t)dims[i];
  }
  if (n == 0)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: dataset '%s' would be empty", PLACE(w), name);
  size_t esize = store == BSA__H5_STORE_U8 ? 1 : store == BSA__H5_STORE_F16 ? 2 : 4;
  /* Chunks hold one head and about 256 KiB: whole rows of the last axis,
   * as many rows of the middle axis as fit. */
  size_t target = (256u << 10) / esize;
  chunk[rank - 1] = d[rank - 1] < 65536 ? d[rank - 1] : 65536;
  if (rank == 3) {
    chunk[0] = 1;
    hsize_t rows = target / chunk[2];
    if (rows < 1) rows = 1;
    chunk[1] = d[1] < rows ? d[1] : rows;
  } else {
    chunk[0] = 1;
  }
  static int deflate_ok = -1;
  if (deflate_ok < 0) deflate_ok = H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0;
  if (!deflate_ok)
    return bsa__fail(NULL, BSA_ERR_IO,
                     "%s: this HDF5 library has no deflate (gzip) filter; cannot write", PLACE(w));

  hid_t ftype, mtype;
  int own_types = 0;
  void *conv = NULL;
  const void *src = data;
  switch (store) {
    case BSA__H5_STORE_F32:
      ftype = H5T_IEEE_F32LE;
      mtype = H5T_NATIVE_FLOAT;
      break;
    case BSA__H5_STORE_I32:
      ftype = H5T_STD_I32LE;
      mtype = H5T_NATIVE_INT32;
      break;
    case BSA__H5_STORE_U8:
      ftype = H5T_STD_U8LE;
      mtype = H5T_NATIVE_UINT8;
      break;
    default:
      /* Converted here (round to nearest even, like numpy) and written
       * without HDF5 conversion. */
      ftype = half_type();
      mtype = H5Tcopy(ftype);
      own_types = 1;
      conv = malloc(n * 2);
      if (!conv) {
        H5Tclose(ftype);
        H5Tclose(mtype);
        return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory converting '%s' to float16",
                         PLACE(w), name);
      }
      bsa_convert(conv, BSA_DTYPE_F16, data, BSA_DTYPE_F32, n);
      src = conv;
      break;
  }
  hid_t sp = H5Screate_simple(rank, d, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(dcpl, 0); /* same inputs, same bytes */
  H5Pset_chunk(dcpl, rank, chunk);
  H5Pset_shuffle(dcpl);
  H5Pset_deflate(dcpl, 4);
  hid_t ds = H5Dcreate2(grp, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  herr_t r = ds >= 0 ? H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) : -1;
  if (ds >= 0 && H5Dclose(ds) < 0) r = -1;
  H5Pclose(dcpl);
  H5Sclose(sp);
  if (own_types) {
    H5Tclose(ftype);
    H5Tclose(mtype);
  }
  free(conv);
  if (r < 0)
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot write dataset '%s' (HDF5: %s)", PLACE(w), name,
                     bsa__h5_detail());
  return BSA_OK;
}

/* ---- temporary output files ---------------------------------------------- */

bsa_status bsa__h5_create_temp(const char *path, hid_t *file, char **tmp_path) {
  *file = -1;
  *tmp_path = NULL;
  if (!path || !*path) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "output path is empty");
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot write: it is a folder", path);
  size_t n = strlen(path) + 16;
  char *tmp = malloc(n);
  if (!tmp) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, n, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot create a file beside it: %s", path, strerror(e));
  }
  /* mkstemp makes the file private; give it the usual permissions. */
  mode_t um = umask(0);
  umask(um);
  if (fchmod(fd, 0666 & ~um) != 0) { /* not fatal: the file stays private */
  }
  close(fd);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    const char *d = bsa__h5_detail();
    unlink(tmp);
    bsa__fail(NULL, BSA_ERR_IO, "%s: cannot create HDF5 file %s (HDF5: %s)", path, tmp, d);
    free(tmp);
    return BSA_ERR_IO;
  }
  *file = f;
  *tmp_path = tmp;
  return BSA_OK;
}

bsa_status bsa__h5_commit_temp(hid_t file, const char *tmp_path, const char *path) {
  if (H5Fclose(file) < 0) {
    const char *d = bsa__h5_detail();
    unlink(tmp_path);
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot finish writing (HDF5: %s); not written", path,
                     d);
  }
  int fd = open(tmp_path, O_RDONLY);
  if (fd >= 0) {
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0) {
      unlink(tmp_path);
      return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot flush to disk: %s; not written", path,
                       strerror(e));
    }
  }
  if (rename(tmp_path, path) != 0) {
    int e = errno;
    unlink(tmp_path);
    return bsa__fail(NULL, BSA_ERR_IO, "%s: cannot move the finished file into place: %s", path,
                     strerror(e));
  }
  return BSA_OK;
}

hid_t bsa__h5_group_create(hid_t loc, const char *name) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, 0);
  hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  return g;
}

void bsa__h5_discard_temp(hid_t file, const char *tmp_path) {
  if (file >= 0) H5Fclose(file);
  if (tmp_path) unlink(tmp_path);
}

bsa_status bsa__h5_in_open(bsa__h5_in *in, const char *path, const char *format) {
  memset(in, 0, sizeof *in);
  in->file = -1;
  if (!(in->path = strdup(path))) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
  bsa_status s = bsa__h5_open_read(path, &in->file);
  if (s == BSA_OK) s = bsa__h5_check_format(in->file, path, format);
  if (s == BSA_OK) s = bsa__h5_list_records(in->file, path, &in->names, &in->count);
  if (s != BSA_OK) bsa__h5_in_close(in);
  return s;
}

void bsa__h5_in_close(bsa__h5_in *in) {
  if (in->file >= 0) H5Fclose(in->file);
  bsa__h5_free_names(in->names, in->count);
  free(in->path);
  memset(in, 0, sizeof *in);
  in->file = -1;
}

bsa_status bsa__h5_in_attr(const bsa__h5_in *in, const char *name, const char *dflt, char **out) {
  bsa__h5_where w = {in->path, NULL};
  int present;
  *out = NULL;
  bsa_status s = bsa__h5_attr_string(in->file, name, &w, out, &present);
  if (s != BSA_OK) return s;
  if (*out && (*out)[0]) return BSA_OK;
  free(*out);
  if (!(*out = strdup(dflt))) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", in->path);
  return BSA_OK;
}

bsa_status bsa__h5_out_begin(bsa__h5_out *o, const char *path, const char *format) {
  memset(o, 0, sizeof *o);
  o->file = o->records = -1;
  if (!(o->path = strdup(path))) return bsa__fail(NULL, BSA_ERR_NOMEM, "%s: out of memory", path);
  bsa_status s = bsa__h5_create_temp(path, &o->file, &o->tmp);
  if (s == BSA_OK) s = bsa__h5_write_attr_string(o->file, "format", format, path);
  if (s == BSA_OK) s = bsa__h5_write_attr_int(o->file, "format_version", 1, path);
  if (s == BSA_OK) {
    o->records = bsa__h5_group_create(o->file, "records");
    if (o->records < 0)
      s = bsa__fail(NULL, BSA_ERR_IO, "%s: cannot create /records (HDF5: %s)", path,
                    bsa__h5_detail());
  }
  if (s != BSA_OK) bsa__h5_out_discard(o);
  return s;
}

bsa_status bsa__h5_out_record(bsa__h5_out *o, const char *name, hid_t *grp) {
  *grp = bsa__h5_group_create(o->records, name);
  if (*grp >= 0) return BSA_OK;
  o->spoiled = 1;
  return bsa__fail(NULL, BSA_ERR_IO, "%s: record '%s': cannot create the group (HDF5: %s)", o->path,
                   name, bsa__h5_detail());
}

bsa_status bsa__h5_out_commit(bsa__h5_out *o) {
  if (o->spoiled) {
    bsa_status s = bsa__fail(NULL, BSA_ERR_IO,
                             "%s: an earlier write failed; the file was not written", o->path);
    bsa__h5_out_discard(o);
    return s;
  }
  H5Gclose(o->records);
  o->records = -1;
  bsa_status s = bsa__h5_commit_temp(o->file, o->tmp, o->path);
  o->file = -1; /* closed (and on failure removed) by the commit */
  free(o->tmp);
  o->tmp = NULL;
  bsa__h5_out_discard(o);
  return s;
}

void bsa__h5_out_discard(bsa__h5_out *o) {
  if (o->records >= 0) H5Gclose(o->records);
  bsa__h5_discard_temp(o->file, o->tmp);
  free(o->tmp);
  free(o->path);
  memset(o, 0, sizeof *o);
  o->file = o->records = -1;
}

void *bsa__h5_alloc_elems(int64_t n, size_t esize) {
  if (n <= 0 || (uint64_t)n > SIZE_MAX / esize) return NULL;
  return malloc((size_t)n * esize);
}

bsa_status bsa__h5_check_record_name(const char *name, const char *path) {
  if (!name || !*name)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record name is empty", path);
  if (strchr(name, '/') || !strcmp(name, "."))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record name '%s' cannot contain '/' or be '.'",
                     path, name);
  if (strlen(name) > 255)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "%s: record name of %zu bytes is longer than 255",
                     path, strlen(name));
  return BSA_OK;
}
