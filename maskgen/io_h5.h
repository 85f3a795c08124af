/*
 * maskgen/io_h5.h - HDF5 helpers shared by the trace and mask readers and
 * writers (maskgen/io_trace.c, maskgen/io_masks.c).  Not API.
 *
 * Every helper that can fail sets the thread-local message (bsa__fail with
 * ctx = NULL) naming the file, the record and the dataset or attribute, and
 * returns a status.  HDF5's own error stack is never printed: callers wrap
 * their work in bsa__h5_enter / bsa__h5_leave, which silence it, serialise
 * HDF5 calls made through this module and restore the caller's settings.
 */
#ifndef BSA_MASKGEN_IO_H5_H
#define BSA_MASKGEN_IO_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "bsa/core.h"

/* Where a failure happened, for messages: "FILE: record 'R': dataset 'D'". */
typedef struct bsa__h5_where {
  const char *file;
  const char *record; /* NULL outside a record */
} bsa__h5_where;

/* Saved HDF5 error-printing state of the caller. */
typedef struct bsa__h5_guard {
  H5E_auto2_t func;
  void *data;
} bsa__h5_guard;

/* Takes the module lock and turns HDF5's automatic error printing off. */
void bsa__h5_enter(bsa__h5_guard *g);
/* Clears HDF5's error stack, restores the printing, releases the lock. */
void bsa__h5_leave(bsa__h5_guard *g);

/* The innermost HDF5 error description of the current stack, or "" (static
 * per thread, valid until the next call). */
const char *bsa__h5_detail(void);

/* Formats "FILE" or "FILE: record 'R'" into buf. */
const char *bsa__h5_place(const bsa__h5_where *w, char *buf, size_t n);

/* Opens path for reading after checking that it exists, is a regular file
 * and carries the HDF5 signature (truncated and foreign files get a
 * BSA_ERR_FORMAT that says so).  *out is the file id. */
bsa_status bsa__h5_open_read(const char *path, hid_t *out);

/* Checks the root attributes "format" (== expect) and "format_version"
 * (== 1) of an open file. */
bsa_status bsa__h5_check_format(hid_t file, const char *path, const char *expect);

/* Names of the groups directly under /records, sorted by strcmp.  *names is
 * malloc'ed (each entry too); free with bsa__h5_free_names. */
bsa_status bsa__h5_list_records(hid_t file, const char *path, char ***names, int64_t *count);
void bsa__h5_free_names(char **names, int64_t count);

/* ---- attributes (on any object; missing ones set *present = 0) ---------- */

/* A string attribute, fixed or variable length, ASCII or UTF-8.  *out is
 * malloc'ed; trailing NULs and spaces of fixed strings are dropped. */
bsa_status bsa__h5_attr_string(hid_t obj, const char *name, const bsa__h5_where *w, char **out,
                               int *present);
/* An integer attribute: integer, boolean (h5py's enum) or a float holding a
 * whole number; a scalar or a one-element array. */
bsa_status bsa__h5_attr_int(hid_t obj, const char *name, const bsa__h5_where *w, int64_t *out,
                            int *present);
/* A real attribute (float or integer class). */
bsa_status bsa__h5_attr_double(hid_t obj, const char *name, const bsa__h5_where *w, double *out,
                               int *present);

/* Writers: variable-length UTF-8 strings (h5py reads str), 64-bit integers,
 * 64-bit floats; scalar dataspaces. */
bsa_status bsa__h5_write_attr_string(hid_t obj, const char *name, const char *value,
                                     const char *path);
bsa_status bsa__h5_write_attr_int(hid_t obj, const char *name, int64_t value, const char *path);
bsa_status bsa__h5_write_attr_double(hid_t obj, const char *name, double value, const char *path);

/* ---- datasets ------------------------------------------------------------ */

/* Kinds of element a reader accepts. */
typedef enum bsa__h5_kind {
  BSA__H5_FLOAT = 0, /* 2- or 4-byte floats (float16, bfloat16, float32) */
  BSA__H5_INT = 1    /* any integer size and sign, or boolean */
} bsa__h5_kind;

/* Opens dataset name in group grp.  When it is missing: with required set,
 * BSA_ERR_FORMAT ("has no dataset"), else BSA_OK with *out = -1. */
bsa_status bsa__h5_dataset_open(hid_t grp, const char *name, int required, const bsa__h5_where *w,
                                hid_t *out);

/* Checks rank and element kind of an open dataset and returns its dims and
 * a dtype name for messages and `trace info` ("float16", "int32", ...).
 * shape_doc (e.g. "[Hq, Sq, D]") goes into the rank error. */
bsa_status bsa__h5_dataset_shape(hid_t dset, const char *name, const bsa__h5_where *w, int rank,
                                 bsa__h5_kind kind, const char *shape_doc, int64_t *dims,
                                 const char **dtype_name);

/* Reads a whole dataset converted to float32 / int64.  buf holds all
 * elements (product of the dims). */
bsa_status bsa__h5_dataset_read_f32(hid_t dset, const char *name, const bsa__h5_where *w,
                                    float *buf);
bsa_status bsa__h5_dataset_read_i64(hid_t dset, const char *name, const bsa__h5_where *w,
                                    int64_t *buf, int64_t n);

/* Element types a writer stores. */
typedef enum bsa__h5_store {
  BSA__H5_STORE_F32 = 0,
  BSA__H5_STORE_F16 = 1, /* IEEE half, as h5py's numpy.float16 */
  BSA__H5_STORE_I32 = 2,
  BSA__H5_STORE_U8 = 3
} bsa__h5_store;

/* Creates a chunked, shuffled and deflate-compressed dataset of rank 2 or 3
 * and writes data (float for F32/F16 stores, int32_t for I32, uint8_t for
 * U8; F16 data is converted here with round-to-nearest-even). */
bsa_status bsa__h5_write_dataset(hid_t grp, const char *name, int rank, const int64_t *dims,
                                 bsa__h5_store store, const void *data, const bsa__h5_where *w);

/* ---- temporary output files ---------------------------------------------- */

/* Creates an empty HDF5 file at a fresh temporary name beside path
 * ("<path>.tmp-XXXXXX").  *tmp_path is malloc'ed. */
bsa_status bsa__h5_create_temp(const char *path, hid_t *file, char **tmp_path);
/* Closes the file and renames tmp_path over path (fsync'ed first). */
bsa_status bsa__h5_commit_temp(hid_t file, const char *tmp_path, const char *path);
/* Creates a group without modification times (so that the same content
 * gives the same bytes); returns its id or a negative value. */
hid_t bsa__h5_group_create(hid_t loc, const char *name);
/* Closes the file (if >= 0) and removes tmp_path. */
void bsa__h5_discard_temp(hid_t file, const char *tmp_path);

/* ---- input files --------------------------------------------------------
 * What the trace and masks readers share: the path, the open file whose
 * root attribute format was checked, and the record names under /records.
 * Call with the HDF5 lock held (bsa__h5_enter). */
typedef struct bsa__h5_in {
  char *path;
  hid_t file;
  char **names;
  int64_t count;
} bsa__h5_in;

/* Opens path for reading; on failure *in is released (and may be closed
 * again). */
bsa_status bsa__h5_in_open(bsa__h5_in *in, const char *path, const char *format);
/* Closes the file and frees the names and the path; accepts a released in. */
void bsa__h5_in_close(bsa__h5_in *in);
/* A root string attribute, or dflt (copied) when it is absent or empty. */
bsa_status bsa__h5_in_attr(const bsa__h5_in *in, const char *name, const char *dflt, char **out);

/* ---- output files -------------------------------------------------------
 * What the trace and masks writers share: a temporary file beside path with
 * the root attributes format and format_version = 1 and an open /records
 * group; each record is a group under it; commit renames the file over
 * path.  A write that fails part-way marks the output spoiled, and commit
 * then refuses.  Call with the HDF5 lock held (bsa__h5_enter). */
typedef struct bsa__h5_out {
  char *path;
  char *tmp;
  hid_t file;
  hid_t records;
  int spoiled;
} bsa__h5_out;

/* Starts the output; on failure nothing is left on disk or in *o. */
bsa_status bsa__h5_out_begin(bsa__h5_out *o, const char *path, const char *format);
/* Creates the group of record name; on failure the output is spoiled. */
bsa_status bsa__h5_out_record(bsa__h5_out *o, const char *name, hid_t *grp);
/* Renames the finished file over path, unless spoiled; releases o always. */
bsa_status bsa__h5_out_commit(bsa__h5_out *o);
/* Removes the temporary file and releases o. */
void bsa__h5_out_discard(bsa__h5_out *o);

/* malloc of n elements of esize bytes; NULL when n <= 0 or on overflow. */
void *bsa__h5_alloc_elems(int64_t n, size_t esize);

/* Checks that a record name can be a group name: non-empty, no '/', not "."
 * and at most 255 bytes. */
bsa_status bsa__h5_check_record_name(const char *name, const char *path);

/* Opens group /records/<name> after checking that name is one of the
 * listed names (else bsa__record_not_found). */
bsa_status bsa__h5_open_record(hid_t file, const char *path, char **names, int64_t count,
                               const char *name, hid_t *grp);

/* "FILE: no record 'NAME' (the file has N records: a, b, ...)",
 * BSA_ERR_INVALID_ARG. */
bsa_status bsa__record_not_found(const char *path, const char *name, char **names, int64_t count);

/* Checks that x [d0, d1, d2] is finite and, with f16 set, fits float16;
 * the message names file, record, dataset and index. */
bsa_status bsa__check_floats(const char *path, const char *rec, const char *ds, const float *x,
                             int64_t d0, int64_t d1, int64_t d2, int f16);

#endif
