/*
 * tests/check_runlog.c - the experiment log (runlog/) with real processes
 * and real SQLite files in a fresh temporary folder per test.
 *
 * Recording and reading back exactly (quotes, newlines, non-ASCII text),
 * schema version and migration from a version 1 log made here with raw SQL,
 * 8 concurrent writer processes, a writer killed with SIGKILL, the rules
 * that tell interrupted runs, finished runs that cannot be rewritten, every
 * bad log path (missing folder, read-only place, not SQLite, another
 * program's database, newer schema: clear error, file unchanged), filters,
 * and the CSV/JSON export parsed back independently.
 *
 * Every test draws fresh random values; the seed is printed on failure.
 */
#define _GNU_SOURCE 1 /* nftw, open_memstream */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <linux/fs.h>
#include <math.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bsa/runlog.h"

/* ---- fixtures and helpers ----------------------------------------------- */

static char tmpdir[256];
static uint64_t rng;
static uint64_t seed;

static uint64_t next_u64(void) {
  /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1Dull;
}

static double next_unit(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

static void setup(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  seed = (uint64_t)ts.tv_nsec * 6364136223846793005ull ^ (uint64_t)getpid() << 20 ^
         (uint64_t)ts.tv_sec;
  if (!seed) seed = 1;
  rng = seed;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/bsa-check-runlog-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void teardown(void) { nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *tpath(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

/* Pieces that break naive quoting: quotes, separators, newlines, shell
 * metacharacters, non-ASCII text in several scripts. */
static const char *const PIECES[] = {
    "a",   "Z",  "7",  "\"", "'",  "\n", "\r\n", ",",  ";",  "\\", " ",  "\t", "%s", "$HOME",
    "`x`", "é",  "Größe", "注意", "✓", "ДА", "🙂", "{",  "}",  "[",  "=",  "--", "|",  "*"};

/* A fresh random string of 1..12 pieces (malloc'ed). */
static char *tricky(void) {
  int n = 1 + (int)(next_u64() % 12);
  char *s = calloc(1, 256);
  for (int i = 0; i < n; i++)
    strcat(s, PIECES[next_u64() % (sizeof PIECES / sizeof PIECES[0])]);
  return s;
}

static void write_random_file(const char *path, size_t size, unsigned char *copy) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  for (size_t i = 0; i < size; i++) {
    unsigned char b = (unsigned char)next_u64();
    if (copy) copy[i] = b;
    fputc(b, f);
  }
  ck_assert_int_eq(fclose(f), 0);
}

/* A file's bytes and modification time, to prove it was not touched. */
typedef struct snapshot {
  char *bytes;
  size_t size;
  struct timespec mtime;
} snapshot;

static snapshot take_snapshot(const char *path) {
  snapshot s = {0};
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  s.mtime = st.st_mtim;
  s.size = (size_t)st.st_size;
  s.bytes = malloc(s.size + 1);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fread(s.bytes, 1, s.size, f), s.size);
  fclose(f);
  return s;
}

static void assert_unchanged(const char *path, snapshot *before) {
  snapshot now = take_snapshot(path);
  ck_assert_msg(now.size == before->size && memcmp(now.bytes, before->bytes, now.size) == 0,
                "%s: bytes changed", path);
  ck_assert_msg(now.mtime.tv_sec == before->mtime.tv_sec &&
                    now.mtime.tv_nsec == before->mtime.tv_nsec,
                "%s: modification time changed", path);
  free(now.bytes);
  free(before->bytes);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Raw SQLite access, independent of runlog/. */
static sqlite3 *raw_open(const char *path) {
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                   SQLITE_OK);
  sqlite3_busy_timeout(db, 30000);
  return db;
}

static void raw_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  ck_assert_msg(rc == SQLITE_OK, "SQL failed: %s: %s", sql, err ? err : "");
}

static int64_t raw_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static char *raw_text(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  const char *t = (const char *)sqlite3_column_text(st, 0);
  char *copy = strdup(t ? t : "(null)");
  sqlite3_finalize(st);
  return copy;
}

static void assert_integrity(const char *path) {
  sqlite3 *db = raw_open(path);
  char *ok = raw_text(db, "PRAGMA integrity_check");
  ck_assert_str_eq(ok, "ok");
  free(ok);
  sqlite3_close(db);
}

static bsa_runlog *open_ok(const char *path) {
  bsa_runlog *log = NULL;
  bsa_status st = bsa_runlog_open(path, &log);
  ck_assert_msg(st == BSA_OK, "open %s: %s", path, bsa_last_error());
  return log;
}

static void hex_of(const unsigned char *d, char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- collecting query results ------------------------------------------- */

typedef struct run_copy {
  int64_t id;
  char verb[64], status[32], recorded[32], started[40], ended[40];
  char *command, *argv_json, *error, *device, *driver, *host;
  int64_t pid, num_params, num_inputs, num_outputs, num_metrics;
} run_copy;

typedef struct runs {
  run_copy v[512];
  int n;
} runs;

static char *dupn(const char *s) { return s ? strdup(s) : NULL; }

static int collect_run(const bsa_runlog_run_row *r, void *user) {
  runs *rs = user;
  ck_assert_int_lt(rs->n, 512);
  run_copy *c = &rs->v[rs->n++];
  memset(c, 0, sizeof *c);
  c->id = r->id;
  snprintf(c->verb, sizeof c->verb, "%s", r->verb);
  snprintf(c->status, sizeof c->status, "%s", r->status);
  snprintf(c->recorded, sizeof c->recorded, "%s", r->recorded_status);
  snprintf(c->started, sizeof c->started, "%s", r->started_at);
  snprintf(c->ended, sizeof c->ended, "%s", r->ended_at ? r->ended_at : "");
  c->command = dupn(r->command);
  c->argv_json = dupn(r->argv_json);
  c->error = dupn(r->error);
  c->device = dupn(r->device_name);
  c->driver = dupn(r->device_driver);
  c->host = dupn(r->host);
  c->pid = r->pid;
  c->num_params = r->num_params;
  c->num_inputs = r->num_inputs;
  c->num_outputs = r->num_outputs;
  c->num_metrics = r->num_metrics;
  return 0;
}

static runs *query_runs(bsa_runlog *log, const bsa_runlog_filter *f) {
  runs *rs = calloc(1, sizeof *rs);
  bsa_status st = bsa_runlog_foreach_run(log, f, collect_run, rs);
  ck_assert_msg(st == BSA_OK, "foreach_run: %s", bsa_runlog_last_error(log));
  return rs;
}

static run_copy *find_run(runs *rs, int64_t id) {
  for (int i = 0; i < rs->n; i++)
    if (rs->v[i].id == id) return &rs->v[i];
  ck_abort_msg("run %lld not found", (long long)id);
  return NULL;
}

typedef struct metric_copy {
  int64_t run_id;
  char name[256];
  double value;
  char *record;
  int32_t head;
  char *labels;
  char status[32];
} metric_copy;

typedef struct metrics {
  metric_copy *v;
  int n, cap;
} metrics;

static int collect_metric(const bsa_runlog_metric_row *m, void *user) {
  metrics *ms = user;
  if (ms->n == ms->cap) {
    ms->cap = ms->cap ? 2 * ms->cap : 64;
    ms->v = realloc(ms->v, (size_t)ms->cap * sizeof *ms->v);
  }
  metric_copy *c = &ms->v[ms->n++];
  c->run_id = m->run_id;
  snprintf(c->name, sizeof c->name, "%s", m->name);
  c->value = m->value;
  c->record = dupn(m->record);
  c->head = m->head;
  c->labels = dupn(m->labels_json);
  snprintf(c->status, sizeof c->status, "%s", m->run_status);
  return 0;
}

typedef struct params {
  char *name[64], *value[64];
  int n;
} params;

static int collect_param(const char *name, const char *value, void *user) {
  params *p = user;
  ck_assert_int_lt(p->n, 64);
  p->name[p->n] = strdup(name);
  p->value[p->n] = strdup(value);
  p->n++;
  return 0;
}

static const char *param_of(params *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->name[i], name) == 0) return p->value[i];
  return NULL;
}

/* ---- recording and reading back ----------------------------------------- */

START_TEST(test_sha256_known_answer) {
  /* FIPS 180-2 example "abc", then a fresh random file against OpenSSL's
   * one-shot SHA256() (a different code path from the log's streaming). */
  const char *p = tpath("abc.txt");
  FILE *f = fopen(p, "wb");
  fputs("abc", f);
  fclose(f);
  size_t big = 3 * 1024 * 1024 + (size_t)(next_u64() % 100000);
  unsigned char *bytes = malloc(big);
  write_random_file(tpath("big.bin"), big, bytes);
  unsigned char d[32];
  char want[65];
  SHA256(bytes, big, d);
  hex_of(d, want);

  bsa_runlog *log = open_ok(tpath("log.db"));
  char *argv[] = {"bsa", "bench"};
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_input(run, "text", p), BSA_OK);
  ck_assert_int_eq(bsa_run_output(run, "blob", tpath("big.bin")), BSA_OK);
  int64_t id = bsa_run_id(run);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);

  sqlite3 *db = raw_open(tpath("log.db"));
  char sql[200];
  snprintf(sql, sizeof sql,
           "SELECT sha256 || ' ' || size FROM files WHERE run_id = %lld AND role = 'text'",
           (long long)id);
  char *got = raw_text(db, sql);
  ck_assert_str_eq(got,
                   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3");
  free(got);
  snprintf(sql, sizeof sql,
           "SELECT sha256 FROM files WHERE run_id = %lld AND direction = 'output'",
           (long long)id);
  got = raw_text(db, sql);
  ck_assert_str_eq(got, want);
  free(got);
  snprintf(sql, sizeof sql, "SELECT size FROM files WHERE run_id = %lld AND role = 'blob'",
           (long long)id);
  ck_assert_int_eq(raw_int(db, sql), (int64_t)big);
  sqlite3_close(db);
  free(bytes);
}
END_TEST

/* Runs a shell command and returns its output (malloc'ed). */
static char *run_shell(const char *command) {
  FILE *p = popen(command, "r");
  ck_assert_ptr_nonnull(p);
  char *out = calloc(1, 1 << 16);
  size_t n = fread(out, 1, (1 << 16) - 1, p);
  out[n] = '\0';
  pclose(p);
  return out;
}

START_TEST(test_roundtrip_exact) {
  bsa_runlog *log = open_ok(tpath("runs.db"));
  /* argv[0..1] make the stored command line a program that prints every
   * argument in brackets: running it through sh proves the quoting exact. */
  enum { NARGS = 10 };
  char *argv[NARGS + 1];
  argv[0] = strdup("printf");
  argv[1] = strdup("[%s]");
  argv[2] = strdup(""); /* an empty argument survives too */
  for (int i = 3; i < NARGS; i++) argv[i] = tricky();
  argv[NARGS] = NULL;
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "trace synth", NARGS, argv, &run), BSA_OK);
  int64_t id = bsa_run_id(run);
  ck_assert_int_gt(id, 0);

  enum { NP = 12 };
  char *pname[NP], *pval[NP];
  for (int i = 0; i < NP; i++) {
    char *t = tricky();
    pname[i] = malloc(300);
    snprintf(pname[i], 300, "p%d%s", i, t); /* unique names */
    free(t);
    pval[i] = tricky();
    ck_assert_int_eq(bsa_run_param(run, pname[i], pval[i]), BSA_OK);
  }
  /* A repeated name replaces the value. */
  char *newval = tricky();
  ck_assert_int_eq(bsa_run_param(run, pname[0], newval), BSA_OK);
  free(pval[0]);
  pval[0] = newval;

  /* A file whose name holds quotes, a newline and non-ASCII text. */
  char *fname = malloc(600);
  char *t = tricky();
  for (char *c = t; *c; c++)
    if (*c == '/') *c = '_';
  snprintf(fname, 600, "%s/in \"put\"\n%s.h5", tmpdir, t);
  free(t);
  write_random_file(fname, 1000 + next_u64() % 5000, NULL);
  ck_assert_int_eq(bsa_run_input(run, "trace", fname), BSA_OK);

  char *dev = tricky(), *drv = tricky();
  ck_assert_int_eq(bsa_run_device(run, dev, drv), BSA_OK);

  enum { NM = 20 };
  double mval[NM];
  char *mrec[NM];
  int32_t mhead[NM];
  for (int i = 0; i < NM; i++) {
    mval[i] = (next_unit() - 0.5) * pow(10.0, (double)(next_u64() % 20) - 10.0);
    mrec[i] = i % 3 ? tricky() : NULL;
    mhead[i] = i % 4 ? (int32_t)(next_u64() % 64) : -1;
    char labels[128];
    snprintf(labels, sizeof labels, "{\"layout\": \"bsr\", \"density\": %.3f, \"i\": %d}",
             next_unit(), i);
    ck_assert_int_eq(bsa_run_metric(run, "recall", mval[i], mrec[i], mhead[i], labels),
                     BSA_OK);
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_ERR_IO, "disk \"full\"\nnon-ASCII: Größe ✓"),
                   BSA_OK);

  /* Reading back through a second handle. */
  bsa_runlog_close(log);
  log = open_ok(tpath("runs.db"));
  bsa_runlog_filter f = {.run_id = id};
  runs *rs = query_runs(log, &f);
  ck_assert_int_eq(rs->n, 1);
  run_copy *r = &rs->v[0];
  ck_assert_str_eq(r->verb, "trace synth");
  ck_assert_str_eq(r->status, "failed");
  ck_assert_str_eq(r->error, "disk \"full\"\nnon-ASCII: Größe ✓");
  ck_assert_str_eq(r->device, dev);
  ck_assert_str_eq(r->driver, drv);
  ck_assert_int_eq(r->pid, getpid());
  ck_assert_int_eq(r->num_params, NP);
  ck_assert_int_eq(r->num_inputs, 1);
  ck_assert_int_eq(r->num_metrics, NM);
  /* ISO 8601 UTC with milliseconds. */
  ck_assert_int_eq((int)strlen(r->started), 24);
  ck_assert_int_eq(r->started[10], 'T');
  ck_assert_int_eq(r->started[19], '.');
  ck_assert_int_eq(r->started[23], 'Z');
  ck_assert_int_ge(strcmp(r->ended, r->started), 0);

  json_error_t jerr;
  json_t *a = json_loads(r->argv_json, 0, &jerr);
  ck_assert_msg(json_is_array(a), "argv_json: %s", jerr.text);
  ck_assert_int_eq((int)json_array_size(a), NARGS);
  for (int i = 0; i < NARGS; i++)
    ck_assert_str_eq(json_string_value(json_array_get(a, (size_t)i)), argv[i]);
  json_decref(a);

  char *want = calloc(1, 1 << 16);
  for (int i = 2; i < NARGS; i++) {
    strcat(want, "[");
    strcat(want, argv[i]);
    strcat(want, "]");
  }
  char *got = run_shell(r->command);
  ck_assert_msg(strcmp(got, want) == 0, "command %s printed %s, want %s", r->command, got,
                want);

  params p = {0};
  ck_assert_int_eq(bsa_runlog_foreach_param(log, id, collect_param, &p), BSA_OK);
  ck_assert_int_eq(p.n, NP);
  for (int i = 0; i < NP; i++) {
    const char *v = param_of(&p, pname[i]);
    ck_assert_msg(v != NULL, "parameter %d missing", i);
    ck_assert_str_eq(v, pval[i]);
  }

  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, id, collect_metric, &ms), BSA_OK);
  ck_assert_int_eq(ms.n, NM);
  for (int i = 0; i < NM; i++) {
    ck_assert_msg(ms.v[i].value == mval[i], "metric %d: %.17g != %.17g", i, ms.v[i].value,
                  mval[i]);
    if (mrec[i])
      ck_assert_str_eq(ms.v[i].record, mrec[i]);
    else
      ck_assert_ptr_null(ms.v[i].record);
    ck_assert_int_eq(ms.v[i].head, mhead[i]);
    json_t *l = json_loads(ms.v[i].labels, 0, NULL);
    ck_assert(json_is_object(l));
    ck_assert_str_eq(json_string_value(json_object_get(l, "layout")), "bsr");
    ck_assert_int_eq((int)json_integer_value(json_object_get(l, "i")), i);
    json_decref(l);
    ck_assert_str_eq(ms.v[i].status, "failed");
  }

  /* The file path as given, byte for byte. */
  sqlite3 *db = raw_open(tpath("runs.db"));
  sqlite3_stmt *st;
  ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT path, abs_path FROM files", -1, &st, NULL),
                   SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), fname);
  ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), fname); /* already absolute */
  sqlite3_finalize(st);
  sqlite3_close(db);
  bsa_runlog_close(log);
}
END_TEST

START_TEST(test_nonfinite_values) {
  bsa_runlog *log = open_ok(tpath("l.db"));
  char *argv[] = {"bsa"};
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 1, argv, &run), BSA_OK);
  int64_t id = bsa_run_id(run);
  double vals[5] = {NAN, INFINITY, -INFINITY, -0.0, next_unit() * 1e-300};
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(bsa_run_metric(run, "x", vals[i], NULL, -1, NULL), BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, id, collect_metric, &ms), BSA_OK);
  ck_assert_int_eq(ms.n, 5);
  ck_assert(isnan(ms.v[0].value));
  ck_assert(isinf(ms.v[1].value) && ms.v[1].value > 0);
  ck_assert(isinf(ms.v[2].value) && ms.v[2].value < 0);
  ck_assert(ms.v[3].value == 0.0);
  ck_assert(ms.v[4].value == vals[4]);
  ck_assert_str_eq(ms.v[0].labels, "{}");
  bsa_runlog_close(log);
}
END_TEST

START_TEST(test_bad_arguments) {
  bsa_runlog *log = open_ok(tpath("l.db"));
  char *argv[] = {"bsa", "x", NULL};
  bsa_run *run = (bsa_run *)0x1;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "", 2, argv, &run), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_null(run);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "verb"));
  ck_assert_int_eq(bsa_runlog_run_begin(log, "v", 3, argv, &run), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "argv[2]"));
  ck_assert_int_eq(bsa_runlog_run_begin(log, "v", 2, argv, &run), BSA_OK);

  const char *bad_labels[] = {"[1,2]", "{\"a\":", "\"text\"", "{\"a\":1,\"a\":2}", "42"};
  int nbad = (int)(sizeof bad_labels / sizeof bad_labels[0]);
  int pick = (int)(next_u64() % (uint64_t)nbad);
  for (int k = 0; k < nbad; k++) {
    const char *l = bad_labels[(pick + k) % nbad];
    ck_assert_int_eq(bsa_run_metric(run, "m", next_unit(), NULL, -1, l), BSA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "labels_json"));
    ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), l));
  }
  ck_assert_int_eq(bsa_run_metric(run, "m", 1, NULL, -2, NULL), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "head = -2"));
  ck_assert_int_eq(bsa_run_metric(run, "", 1, NULL, -1, NULL), BSA_ERR_INVALID_ARG);
  ck_assert_int_eq(bsa_run_param(run, "", "v"), BSA_ERR_INVALID_ARG);
  ck_assert_int_eq(bsa_run_param(run, "n", NULL), BSA_ERR_INVALID_ARG);
  ck_assert_int_eq(bsa_run_device(run, "", "d"), BSA_ERR_INVALID_ARG);
  const char *missing = tpath("no-such-input.h5");
  ck_assert_int_eq(bsa_run_input(run, "trace", missing), BSA_ERR_IO);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), missing));
  ck_assert_int_eq(bsa_run_output(run, "dir", tmpdir), BSA_ERR_IO);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "not a regular file"));
  int64_t id = bsa_run_id(run);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);

  /* Nothing of the rejected calls was recorded. */
  bsa_runlog_filter f = {.run_id = id};
  runs *rs = query_runs(log, &f);
  ck_assert_int_eq(rs->n, 1);
  ck_assert_int_eq(rs->v[0].num_metrics, 0);
  ck_assert_int_eq(rs->v[0].num_params, 0);
  ck_assert_int_eq(rs->v[0].num_inputs + rs->v[0].num_outputs, 0);

  bsa_runlog_filter bad = {.status = "done"};
  ck_assert_int_eq(bsa_runlog_foreach_run(log, &bad, collect_run, rs), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(bsa_runlog_last_error(log), "'done'"));
  ck_assert_int_eq(bsa_runlog_write_run_json(log, id + 1000, 1, stdout), BSA_ERR_INVALID_ARG);
  bsa_runlog *none = (bsa_runlog *)0x1;
  ck_assert_int_eq(bsa_runlog_open(NULL, &none), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_null(none);
  ck_assert_int_eq(bsa_runlog_open("", &none), BSA_ERR_INVALID_ARG);
  ck_assert_int_eq(bsa_run_end(NULL, BSA_OK, NULL), BSA_ERR_INVALID_ARG);
  bsa_runlog_close(NULL);
  bsa_runlog_close(log);
}
END_TEST

/* ---- schema version and migration ---------------------------------------- */

START_TEST(test_new_log_schema) {
  const char *p = tpath("new.db");
  bsa_runlog *log = open_ok(p);
  ck_assert_int_eq(bsa_runlog_schema_version(), 2);
  ck_assert_str_eq(bsa_runlog_path(log), p);
  bsa_runlog_close(log);
  sqlite3 *db = raw_open(p);
  ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), bsa_runlog_schema_version());
  ck_assert_int_eq(raw_int(db, "PRAGMA application_id"), 0x42534131);
  char *mode = raw_text(db, "PRAGMA journal_mode");
  ck_assert_str_eq(mode, "wal");
  free(mode);
  sqlite3_close(db);
  assert_integrity(p);
  /* Opening again changes nothing in the schema. */
  log = open_ok(p);
  bsa_runlog_close(log);
  db = raw_open(p);
  ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 2);
  sqlite3_close(db);
}
END_TEST

/* A version 1 log exactly as version 1 of runlog/ made it (a frozen copy of
 * its schema: do not edit when the schema moves on). */
static const char *const V1_SCHEMA =
    "PRAGMA journal_mode = WAL;"
    "BEGIN;"
    "PRAGMA application_id = 1112752433;"
    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, verb TEXT NOT NULL,"
    " argv_json TEXT NOT NULL, command TEXT NOT NULL, cwd TEXT, host TEXT NOT NULL,"
    " pid INTEGER NOT NULL, bsa_version TEXT NOT NULL, build_info TEXT NOT NULL,"
    " device_name TEXT, device_driver TEXT, started_at TEXT NOT NULL, ended_at TEXT,"
    " status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed')),"
    " error TEXT);"
    "CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL,"
    " value TEXT NOT NULL, PRIMARY KEY (run_id, name));"
    "CREATE TABLE files (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
    " direction TEXT NOT NULL CHECK (direction IN ('input', 'output')), role TEXT NOT NULL,"
    " path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL);"
    "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
    " name TEXT NOT NULL, value REAL, record TEXT, head INTEGER,"
    " labels TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX metrics_run ON metrics(run_id);"
    "CREATE INDEX files_run ON files(run_id);"
    "PRAGMA user_version = 1;"
    "COMMIT;";

/* A pid that is certainly not running: a child that has exited and been
 * collected. */
static pid_t dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  return pid;
}

/* Fills a v1 log with one finished run (values random) and one run left
 * running by a process that is gone.  Returns the finished run's recall. */
static double fill_v1(sqlite3 *db, double *time_ms) {
  char host[256];
  gethostname(host, sizeof host);
  double recall = next_unit(), t = 1 + 100 * next_unit();
  sqlite3_stmt *st;
  ck_assert_int_eq(
      sqlite3_prepare_v2(db,
                         "INSERT INTO runs (verb, argv_json, command, cwd, host, pid,"
                         " bsa_version, build_info, started_at, ended_at, status)"
                         " VALUES (?, ?, ?, '/w', ?, ?, '0.0.9', 'cc: old', ?, ?, ?)",
                         -1, &st, NULL),
      SQLITE_OK);
  sqlite3_bind_text(st, 1, "eval", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, "[\"bsa\",\"eval\",\"--trace\",\"t \\\"1\\\".h5\"]", -1,
                    SQLITE_STATIC);
  sqlite3_bind_text(st, 3, "bsa eval --trace 't \"1\".h5'", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, host, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, 12345);
  sqlite3_bind_text(st, 6, "2025-01-02T03:04:05.678Z", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, "2025-01-02T03:04:09.000Z", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 8, "ok", -1, SQLITE_STATIC);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, "bench", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, dead_pid());
  sqlite3_bind_null(st, 7);
  sqlite3_bind_text(st, 8, "running", -1, SQLITE_STATIC);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO params VALUES (1, 'top_p', '0.9');"
           "INSERT INTO files (run_id, direction, role, path, size, sha256)"
           " VALUES (1, 'input', 'trace', 't \"1\".h5', 10, '%064d');"
           "INSERT INTO metrics (run_id, name, value, record, head, labels)"
           " VALUES (1, 'recall', %.17g, 'r0', 3, '{\"method\":\"oracle\"}'),"
           " (1, 'time_ms', %.17g, NULL, NULL, '{}')",
           0, recall, t);
  raw_exec(db, sql);
  *time_ms = t;
  return recall;
}

START_TEST(test_migrate_v1) {
  const char *p = tpath("v1.db");
  sqlite3 *db = raw_open(p);
  raw_exec(db, V1_SCHEMA);
  double time_ms;
  double recall = fill_v1(db, &time_ms);
  sqlite3_close(db);

  bsa_runlog *log = open_ok(p);
  db = raw_open(p);
  ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 2);
  ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM pragma_table_info('runs')"
                               " WHERE name IN ('boot_id', 'proc_start')"),
                   2);
  ck_assert_int_eq(
      raw_int(db, "SELECT count(*) FROM pragma_table_info('files') WHERE name = 'abs_path'"),
      1);
  /* The old rows are all there, unchanged. */
  ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM runs"), 2);
  char *cmd = raw_text(db, "SELECT command FROM runs WHERE id = 1");
  ck_assert_str_eq(cmd, "bsa eval --trace 't \"1\".h5'");
  free(cmd);
  sqlite3_close(db);
  assert_integrity(p);

  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_metric(log, "eval", NULL, collect_metric, &ms), BSA_OK);
  ck_assert_int_eq(ms.n, 2);
  ck_assert(ms.v[0].value == recall);
  ck_assert_str_eq(ms.v[0].record, "r0");
  ck_assert_int_eq(ms.v[0].head, 3);
  ck_assert_str_eq(ms.v[0].labels, "{\"method\":\"oracle\"}");
  ck_assert(ms.v[1].value == time_ms);
  ck_assert_int_eq(ms.v[1].head, -1);
  ck_assert_str_eq(ms.v[1].status, "ok");

  /* The run its dead process left running reads as interrupted (a v1 row
   * has no boot id or start time: the pid check alone decides). */
  runs *rs = query_runs(log, NULL);
  ck_assert_int_eq(rs->n, 2);
  ck_assert_str_eq(find_run(rs, 2)->status, "interrupted");
  ck_assert_str_eq(find_run(rs, 2)->recorded, "running");
  ck_assert_str_eq(find_run(rs, 1)->status, "ok");

  /* New runs go on from there, with the version 2 columns filled. */
  char *argv[] = {"bsa", "bench"};
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_id(run), 3);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);
  db = raw_open(p);
  ck_assert_int_eq(raw_int(db, "SELECT proc_start IS NOT NULL FROM runs WHERE id = 3"), 1);
  /* The version 2 rules hold for old runs too. */
  ck_assert_int_ne(sqlite3_exec(db, "DELETE FROM runs WHERE id = 1", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
}
END_TEST

START_TEST(test_migration_is_atomic) {
  /* A v1 log where step 1 of the v2 migration cannot run (the column exists
   * already): the open fails, naming the versions and the step, and the log
   * stays exactly a v1 log with its data. */
  const char *p = tpath("v1-odd.db");
  sqlite3 *db = raw_open(p);
  raw_exec(db, V1_SCHEMA);
  raw_exec(db, "ALTER TABLE runs ADD COLUMN boot_id TEXT");
  double time_ms;
  fill_v1(db, &time_ms);
  raw_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  snapshot before = take_snapshot(p);

  bsa_runlog *log = (bsa_runlog *)0x1;
  ck_assert_int_eq(bsa_runlog_open(p, &log), BSA_ERR_IO);
  ck_assert_ptr_null(log);
  const char *msg = bsa_last_error();
  ck_assert_msg(strstr(msg, "version 1 to 2") && strstr(msg, "step 1") && strstr(msg, p),
                "message: %s", msg);
  assert_unchanged(p, &before);
  db = raw_open(p);
  ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 1);
  ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM metrics"), 2);
  ck_assert_int_eq(
      raw_int(db, "SELECT count(*) FROM pragma_table_info('files') WHERE name = 'abs_path'"),
      0);
  sqlite3_close(db);
}
END_TEST

/* ---- concurrency and killed writers -------------------------------------- */

enum { WRITERS = 8, RUNS_PER = 6, METRICS_PER = 25 };

static double expected_value(uint64_t s, int w, int r, int m) {
  uint64_t x = s ^ ((uint64_t)(w + 1) << 40) ^ ((uint64_t)(r + 1) << 20) ^ (uint64_t)(m + 1);
  x ^= x >> 31;
  x *= 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return (double)(x >> 11) / 9007199254740992.0;
}

static int writer_child(const char *path, int w, uint64_t s, int start_fd) {
  char c;
  if (read(start_fd, &c, 1) != 1) return 10; /* all start together */
  bsa_runlog *log;
  if (bsa_runlog_open(path, &log) != BSA_OK) {
    fprintf(stderr, "writer %d: %s\n", w, bsa_last_error());
    return 11;
  }
  for (int r = 0; r < RUNS_PER; r++) {
    char wbuf[16], rbuf[16];
    snprintf(wbuf, sizeof wbuf, "%d", w);
    snprintf(rbuf, sizeof rbuf, "%d", r);
    char *argv[] = {"bsa", "bench", "--writer", wbuf, "--run", rbuf};
    bsa_run *run;
    if (bsa_runlog_run_begin(log, "bench", 6, argv, &run) != BSA_OK) return 12;
    if (bsa_run_param(run, "writer", wbuf) != BSA_OK) return 13;
    if (bsa_run_param(run, "run", rbuf) != BSA_OK) return 13;
    for (int m = 0; m < METRICS_PER; m++)
      if (bsa_run_metric(run, "v", expected_value(s, w, r, m), NULL, m, NULL) != BSA_OK) {
        fprintf(stderr, "writer %d: %s\n", w, bsa_runlog_last_error(log));
        return 14;
      }
    if (bsa_run_end(run, BSA_OK, NULL) != BSA_OK) return 15;
  }
  bsa_runlog_close(log);
  return 0;
}

START_TEST(test_concurrent_writers) {
  /* The log does not exist yet: the 8 writers also race to create it. */
  const char *p = tpath("shared.db");
  int go[2];
  ck_assert_int_eq(pipe(go), 0);
  pid_t pids[WRITERS];
  for (int w = 0; w < WRITERS; w++) {
    pids[w] = fork();
    ck_assert_int_ge(pids[w], 0);
    if (pids[w] == 0) {
      close(go[1]);
      _exit(writer_child(p, w, seed, go[0]));
    }
  }
  close(go[0]);
  char start[WRITERS];
  memset(start, 'g', sizeof start);
  ck_assert_int_eq(write(go[1], start, sizeof start), WRITERS);
  close(go[1]);
  for (int w = 0; w < WRITERS; w++) {
    int status;
    ck_assert_int_eq(waitpid(pids[w], &status, 0), pids[w]);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d: status %d", w,
                  status);
  }
  assert_integrity(p);

  bsa_runlog *log = open_ok(p);
  bsa_runlog_filter f = {.status = "ok"};
  runs *rs = query_runs(log, &f);
  ck_assert_int_eq(rs->n, WRITERS * RUNS_PER);
  /* Every metric, with the value its writer computed. */
  static int seen[WRITERS][RUNS_PER][METRICS_PER];
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < rs->n; i++) {
    ck_assert_int_eq(rs->v[i].num_metrics, METRICS_PER);
    params pr = {0};
    ck_assert_int_eq(bsa_runlog_foreach_param(log, rs->v[i].id, collect_param, &pr), BSA_OK);
    int w = atoi(param_of(&pr, "writer")), r = atoi(param_of(&pr, "run"));
    metrics ms = {0};
    ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, rs->v[i].id, collect_metric, &ms),
                     BSA_OK);
    for (int k = 0; k < ms.n; k++) {
      int m = ms.v[k].head;
      ck_assert(ms.v[k].value == expected_value(seed, w, r, m));
      seen[w][r][m]++;
    }
  }
  for (int w = 0; w < WRITERS; w++)
    for (int r = 0; r < RUNS_PER; r++)
      for (int m = 0; m < METRICS_PER; m++)
        ck_assert_msg(seen[w][r][m] == 1, "writer %d run %d metric %d seen %d times", w, r, m,
                      seen[w][r][m]);
  bsa_runlog_close(log);
}
END_TEST

/* Begins a run, reports its id on fd, then records metrics until killed. */
static void doomed_child(const char *path, int fd, int go_fd) {
  bsa_runlog *log;
  if (bsa_runlog_open(path, &log) != BSA_OK) _exit(20);
  char *argv[] = {"bsa", "maskgen", "--method", "kmeans"};
  bsa_run *run;
  if (bsa_runlog_run_begin(log, "maskgen", 4, argv, &run) != BSA_OK) _exit(21);
  bsa_run_param(run, "method", "kmeans");
  int64_t id = bsa_run_id(run);
  if (write(fd, &id, sizeof id) != sizeof id) _exit(22);
  if (go_fd >= 0) {
    char c;
    if (read(go_fd, &c, 1) < 0) _exit(23);
  }
  for (int i = 0;; i++) bsa_run_metric(run, "iter", i, NULL, -1, NULL);
}

START_TEST(test_sigkill_interrupted) {
  const char *p = tpath("killed.db");
  /* An earlier run, finished, with random values. */
  bsa_runlog *log = open_ok(p);
  char *argv[] = {"bsa", "eval"};
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  int64_t early = bsa_run_id(run);
  double v[10];
  for (int i = 0; i < 10; i++) {
    v[i] = next_unit();
    ck_assert_int_eq(bsa_run_metric(run, "recall", v[i], "r", i, NULL), BSA_OK);
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);

  int idp[2], gop[2];
  ck_assert_int_eq(pipe(idp), 0);
  ck_assert_int_eq(pipe(gop), 0);
  pid_t child = fork();
  if (child == 0) {
    close(idp[0]);
    close(gop[1]);
    doomed_child(p, idp[1], gop[0]);
  }
  close(idp[1]);
  close(gop[0]);
  int64_t id = 0;
  ck_assert_int_eq(read(idp[0], &id, sizeof id), (ssize_t)sizeof id);

  /* While its process lives, the run is running. */
  log = open_ok(p);
  bsa_runlog_filter f = {.run_id = id};
  runs *rs = query_runs(log, &f);
  ck_assert_str_eq(rs->v[0].status, "running");
  bsa_runlog_close(log);

  /* Let it write flat out, then kill it in the middle of that. */
  ck_assert_int_eq(write(gop[1], "g", 1), 1);
  struct timespec pause = {0, 20000000 + (long)(next_u64() % 30000000)};
  nanosleep(&pause, NULL);
  ck_assert_int_eq(kill(child, SIGKILL), 0);
  int status;
  ck_assert_int_eq(waitpid(child, &status, 0), child);
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  assert_integrity(p);
  log = open_ok(p);
  rs = query_runs(log, &f);
  ck_assert_int_eq(rs->n, 1);
  ck_assert_str_eq(rs->v[0].status, "interrupted");
  ck_assert_str_eq(rs->v[0].recorded, "running");
  ck_assert_int_eq(rs->v[0].num_params, 1);
  ck_assert_int_gt(rs->v[0].num_metrics, 0);
  bsa_runlog_filter fi = {.status = "interrupted"};
  rs = query_runs(log, &fi);
  ck_assert_int_eq(rs->n, 1);
  ck_assert_int_eq(rs->v[0].id, id);
  /* The earlier run is intact. */
  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, early, collect_metric, &ms), BSA_OK);
  ck_assert_int_eq(ms.n, 10);
  for (int i = 0; i < 10; i++) {
    ck_assert(ms.v[i].value == v[i]);
    ck_assert_int_eq(ms.v[i].head, i);
    ck_assert_str_eq(ms.v[i].status, "ok");
  }
  /* The metrics the killed run recorded are consecutive from 0: each was
   * committed whole. */
  metrics km = {0};
  ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, id, collect_metric, &km), BSA_OK);
  for (int i = 0; i < km.n; i++) ck_assert(km.v[i].value == i);
  /* And the log takes new runs. */
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);
}
END_TEST

START_TEST(test_interrupted_rules) {
  /* Rows as other processes would have left them, inserted directly. */
  const char *p = tpath("rules.db");
  bsa_runlog *log = open_ok(p);
  char host[256], boot[64] = "";
  gethostname(host, sizeof host);
  FILE *bf = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (bf) {
    if (!fgets(boot, sizeof boot, bf)) boot[0] = '\0';
    boot[strcspn(boot, "\n")] = '\0';
    fclose(bf);
  }
  /* Our own start time, from /proc like the log reads it. */
  char stat_text[1024] = "";
  FILE *sf = fopen("/proc/self/stat", "r");
  ck_assert_ptr_nonnull(sf);
  ck_assert_ptr_nonnull(fgets(stat_text, sizeof stat_text, sf));
  fclose(sf);
  char *q = strrchr(stat_text, ')') + 2;
  for (int field = 3; field < 22; field++) q = strchr(q, ' ') + 1;
  long long my_start = atoll(q);

  sqlite3 *db = raw_open(p);
  sqlite3_stmt *st;
  ck_assert_int_eq(sqlite3_prepare_v2(db,
                                      "INSERT INTO runs (id, verb, argv_json, command, host,"
                                      " pid, bsa_version, build_info, started_at, status,"
                                      " boot_id, proc_start) VALUES (?, 'bench', '[]', '',"
                                      " ?, ?, 'v', 'b', '2026-01-01T00:00:00.000Z', ?, ?, ?)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  struct {
    int64_t id;
    const char *host;
    int64_t pid;
    const char *status;
    const char *boot;
    long long start;
    const char *want;
  } rows[] = {
      {101, host, getpid(), "running", boot, my_start, "running"},       /* alive: us */
      {102, host, getpid(), "running", boot, my_start + 7, "interrupted"}, /* pid reused */
      {103, host, getpid(), "running", "another-boot", my_start, "interrupted"}, /* reboot */
      {104, host, dead_pid(), "running", boot, 1, "interrupted"},        /* gone */
      {105, "some-other-host.example", dead_pid(), "running", boot, 1, "running"}, /* unknown */
      {106, host, dead_pid(), "ok", boot, 1, "ok"},                      /* finished */
      {107, host, dead_pid(), "failed", boot, 1, "failed"},
  };
  int n = (int)(sizeof rows / sizeof rows[0]);
  for (int i = 0; i < n; i++) {
    sqlite3_bind_int64(st, 1, rows[i].id);
    sqlite3_bind_text(st, 2, rows[i].host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rows[i].pid);
    sqlite3_bind_text(st, 4, rows[i].status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, rows[i].boot, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, rows[i].start);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);

  runs *rs = query_runs(log, NULL);
  ck_assert_int_eq(rs->n, n);
  for (int i = 0; i < n; i++) {
    if (rows[i].id == 103 && !boot[0]) continue; /* no boot id on this system */
    ck_assert_msg(strcmp(find_run(rs, rows[i].id)->status, rows[i].want) == 0,
                  "run %lld: %s, want %s", (long long)rows[i].id,
                  find_run(rs, rows[i].id)->status, rows[i].want);
  }

  /* A zombie (exited, not yet collected) is gone too. */
  pid_t z = fork();
  if (z == 0) _exit(0);
  int zombie = 0;
  for (int k = 0; k < 200 && !zombie; k++) {
    char path[64], text[512] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)z);
    FILE *zf = fopen(path, "r");
    if (zf) {
      if (fgets(text, sizeof text, zf)) zombie = strstr(text, ") Z ") != NULL;
      fclose(zf);
    }
    if (!zombie) usleep(5000);
  }
  if (zombie) {
    db = raw_open(p);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO runs (id, verb, argv_json, command, host, pid, bsa_version,"
             " build_info, started_at, status) VALUES (108, 'bench', '[]', '', '%s', %d,"
             " 'v', 'b', '2026-01-01T00:00:00.000Z', 'running')",
             host, (int)z);
    raw_exec(db, sql);
    sqlite3_close(db);
    bsa_runlog_filter f = {.run_id = 108};
    rs = query_runs(log, &f);
    ck_assert_str_eq(rs->v[0].status, "interrupted");
  }
  waitpid(z, NULL, 0);
  bsa_runlog_close(log);
}
END_TEST

START_TEST(test_finished_runs_frozen) {
  const char *p = tpath("frozen.db");
  bsa_runlog *log = open_ok(p);
  char *argv[] = {"bsa", "eval"};
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  int64_t id = bsa_run_id(run);
  double v = next_unit();
  ck_assert_int_eq(bsa_run_param(run, "k", "1"), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, "recall", v, NULL, -1, NULL), BSA_OK);

  /* A forked child holds the pointer but may not write the run. */
  pid_t c = fork();
  if (c == 0) {
    bsa_status s = bsa_run_param(run, "k", "2");
    _exit(s == BSA_ERR_INVALID_ARG && strstr(bsa_runlog_last_error(log), "only that process")
              ? 0
              : 1);
  }
  int status;
  waitpid(c, &status, 0);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);

  sqlite3 *db = raw_open(p);
  const char *attacks[] = {
      "UPDATE runs SET status = 'failed'",
      "UPDATE runs SET ended_at = '2030-01-01T00:00:00.000Z'",
      "DELETE FROM runs",
      "UPDATE params SET value = '2'",
      "DELETE FROM params",
      "INSERT INTO params VALUES (1, 'new', 'x')",
      "UPDATE metrics SET value = 0",
      "DELETE FROM metrics",
      "INSERT INTO metrics (run_id, name, value) VALUES (1, 'extra', 1)",
      "INSERT INTO files (run_id, direction, role, path, size, sha256)"
      " VALUES (1, 'output', 'x', 'x', 1, 'x')",
  };
  for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
    char *err = NULL;
    int rc = sqlite3_exec(db, attacks[i], NULL, NULL, &err);
    ck_assert_msg(rc != SQLITE_OK, "allowed: %s", attacks[i]);
    ck_assert_msg(err && strstr(err, "experiment log never"), "%s: %s", attacks[i], err);
    sqlite3_free(err);
  }
  sqlite3_close(db);
  log = open_ok(p);
  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_run_metric(log, id, collect_metric, &ms), BSA_OK);
  ck_assert_int_eq(ms.n, 1);
  ck_assert(ms.v[0].value == v);
  ck_assert_str_eq(ms.v[0].status, "ok");
  bsa_runlog_close(log);
}
END_TEST

/* ---- bad log paths: clear errors, nothing touched ------------------------ */

static void expect_open_error(const char *path, bsa_status want, const char *words) {
  bsa_runlog *log = (bsa_runlog *)0x1;
  bsa_status st = bsa_runlog_open(path, &log);
  ck_assert_msg(st == want, "open %s: status %d, want %d (%s)", path, st, want,
                bsa_last_error());
  ck_assert_ptr_null(log);
  const char *msg = bsa_last_error();
  ck_assert_msg(strstr(msg, path) != NULL, "message does not name the path: %s", msg);
  if (words) ck_assert_msg(strstr(msg, words) != NULL, "message lacks '%s': %s", words, msg);
}

START_TEST(test_missing_folder) {
  char *p = tpath("no/such/folder/runs.db");
  expect_open_error(p, BSA_ERR_IO, "folder");
  ck_assert(!exists(tpath("no")));
  /* A parent that is a regular file. */
  const char *file = tpath("plain.txt");
  write_random_file(file, 100 + next_u64() % 100, NULL);
  snapshot before = take_snapshot(file);
  char p2[600];
  snprintf(p2, sizeof p2, "%s/runs.db", file);
  expect_open_error(p2, BSA_ERR_IO, "not a folder");
  assert_unchanged(file, &before);
  /* A folder where the file should be. */
  expect_open_error(tmpdir, BSA_ERR_IO, "is a folder");
  /* The reader's open never creates a log. */
  bsa_runlog *log;
  const char *none = tpath("absent.db");
  ck_assert_int_eq(bsa_runlog_open_existing(none, &log), BSA_ERR_IO);
  ck_assert_ptr_nonnull(strstr(bsa_last_error(), "no experiment log"));
  ck_assert(!exists(none));
}
END_TEST

/* Sets or clears the immutable attribute (chattr +i); 0 on success.  The
 * one way to make a place read-only even for root without mounting. */
static int set_immutable(const char *path, int on) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int flags = 0;
  int rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
  if (rc == 0) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
  }
  close(fd);
  return rc;
}

START_TEST(test_readonly_places) {
  /* /proc takes no new files, whoever asks: a read-only place for root too. */
  char p[128];
  snprintf(p, sizeof p, "/proc/bsa-runlog-%llu.db", (unsigned long long)(next_u64() % 100000));
  if (exists("/proc/self/stat")) {
    expect_open_error(p, BSA_ERR_IO, "cannot create");
    ck_assert(!exists(p));
  } else {
    fprintf(stderr, "check_runlog: no /proc here; the /proc case is skipped\n");
  }

  /* A folder made read-only.  Root ignores permission bits, so as root the
   * folder is made immutable instead; where the file system or the
   * container does not allow that, this part is reported and skipped. */
  const char *dir = tpath("ro");
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  char inside[600];
  snprintf(inside, sizeof inside, "%s/runs.db", dir);
  int locked = 0;
  if (geteuid() != 0) {
    locked = chmod(dir, 0555) == 0;
  } else if (set_immutable(dir, 1) == 0) {
    locked = 2;
  } else {
    fprintf(stderr, "check_runlog: cannot make a folder immutable here (%s); the read-only "
                    "folder case is covered by /proc only\n",
            strerror(errno));
  }
  if (locked) {
    /* Results first, assertions after the folder is writable again: a
     * failed check must not leave an immutable folder behind. */
    bsa_runlog *l2 = (bsa_runlog *)0x1;
    bsa_status st = bsa_runlog_open(inside, &l2);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", bsa_last_error());
    int created = exists(inside);
    if (locked == 2)
      set_immutable(dir, 0);
    else
      chmod(dir, 0755);
    ck_assert_msg(st == BSA_ERR_IO && l2 == NULL, "read-only folder: status %d", st);
    ck_assert_msg(strstr(msg, inside) && strstr(msg, "cannot create"), "message: %s", msg);
    ck_assert(!created);
  }

  /* An existing log that cannot be written: writers are refused, readers
   * get it read-only, and it is not changed. */
  const char *logp = tpath("ro.db");
  bsa_runlog *log = open_ok(logp);
  char *argv[] = {"bsa", "eval"};
  bsa_run *run;
  double v = next_unit();
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, "recall", v, NULL, -1, NULL), BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_runlog_close(log);
  int file_locked = geteuid() != 0 ? chmod(logp, 0444) == 0 : set_immutable(logp, 1) == 0;
  if (!file_locked) {
    fprintf(stderr, "check_runlog: cannot make a file read-only for this user; skipped\n");
    return;
  }
  snapshot before = take_snapshot(logp);
  /* Results first, assertions after the file is writable again. */
  bsa_runlog *l2 = (bsa_runlog *)0x1;
  bsa_status st_write = bsa_runlog_open(logp, &l2);
  char msg_write[1024];
  snprintf(msg_write, sizeof msg_write, "%s", bsa_last_error());
  bsa_status st_read = bsa_runlog_open_existing(logp, &log);
  metrics ms = {0};
  bsa_status st_query = BSA_ERR_INTERNAL, st_begin = BSA_ERR_INTERNAL;
  char msg_begin[1024] = "";
  if (st_read == BSA_OK) {
    st_query = bsa_runlog_foreach_metric(log, NULL, "recall", collect_metric, &ms);
    st_begin = bsa_runlog_run_begin(log, "eval", 2, argv, &run);
    snprintf(msg_begin, sizeof msg_begin, "%s", bsa_runlog_last_error(log));
    bsa_runlog_close(log);
  }
  if (geteuid() != 0)
    chmod(logp, 0644);
  else
    set_immutable(logp, 0);
  ck_assert_msg(st_write == BSA_ERR_IO && l2 == NULL, "read-only log opened for writing");
  ck_assert_msg(strstr(msg_write, logp) && strstr(msg_write, "cannot be written"), "%s",
                msg_write);
  ck_assert_msg(st_read == BSA_OK, "read-only log not readable: %s", bsa_last_error());
  ck_assert_int_eq(st_query, BSA_OK);
  ck_assert_int_eq(ms.n, 1);
  ck_assert(ms.v[0].value == v);
  ck_assert_int_eq(st_begin, BSA_ERR_IO);
  ck_assert_ptr_nonnull(strstr(msg_begin, "read-only"));
  assert_unchanged(logp, &before);
}
END_TEST

START_TEST(test_not_sqlite) {
  /* Random bytes, text, and a page of SQLite-like bytes with a wrong magic. */
  const char *bin = tpath("random.db");
  write_random_file(bin, 100 + next_u64() % 5000, NULL);
  const char *txt = tpath("notes.db");
  FILE *f = fopen(txt, "w");
  fprintf(f, "experiment notes %llu\nnot a database\n", (unsigned long long)next_u64());
  fclose(f);
  const char *paths[] = {bin, txt};
  for (int i = 0; i < 2; i++) {
    struct timespec old[2] = {{1000000000 + (long)(next_u64() % 100000), 0},
                              {1000000000 + (long)(next_u64() % 100000), 0}};
    utimensat(AT_FDCWD, paths[i], old, 0); /* an old mtime shows any write */
    snapshot before = take_snapshot(paths[i]);
    expect_open_error(paths[i], BSA_ERR_FORMAT, "not an SQLite database");
    bsa_runlog *log;
    ck_assert_int_eq(bsa_runlog_open_existing(paths[i], &log), BSA_ERR_FORMAT);
    assert_unchanged(paths[i], &before);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", paths[i]);
    ck_assert(!exists(side));
    snprintf(side, sizeof side, "%s-journal", paths[i]);
    ck_assert(!exists(side));
  }
}
END_TEST

START_TEST(test_foreign_sqlite) {
  /* Another program's database: bsa must not add its tables to it. */
  const char *p = tpath("other-app.sqlite");
  sqlite3 *db = raw_open(p);
  char sql[200];
  snprintf(sql, sizeof sql, "CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('%llu')",
           (unsigned long long)next_u64());
  raw_exec(db, sql);
  sqlite3_close(db);
  snapshot before = take_snapshot(p);
  expect_open_error(p, BSA_ERR_FORMAT, "not a bsa experiment log");
  assert_unchanged(p, &before);
  /* The same with a foreign application id and no tables. */
  const char *p2 = tpath("other-app2.sqlite");
  db = raw_open(p2);
  raw_exec(db, "PRAGMA application_id = 1234; PRAGMA user_version = 1");
  sqlite3_close(db);
  snapshot before2 = take_snapshot(p2);
  expect_open_error(p2, BSA_ERR_FORMAT, "not a bsa experiment log");
  assert_unchanged(p2, &before2);
}
END_TEST

START_TEST(test_newer_schema) {
  const char *p = tpath("future.db");
  sqlite3 *db = raw_open(p);
  int future = 3 + (int)(next_u64() % 1000);
  char sql[300];
  snprintf(sql, sizeof sql,
           "PRAGMA journal_mode = WAL; PRAGMA application_id = 1112752433;"
           " CREATE TABLE runs_v%d (x); PRAGMA user_version = %d",
           future, future);
  raw_exec(db, sql);
  sqlite3_close(db);
  /* And the case of the brief: 999. */
  const char *p999 = tpath("future999.db");
  db = raw_open(p999);
  raw_exec(db, "PRAGMA application_id = 1112752433; CREATE TABLE t (x);"
               " PRAGMA user_version = 999");
  sqlite3_close(db);
  const char *paths[] = {p, p999};
  for (int i = 0; i < 2; i++) {
    snapshot before = take_snapshot(paths[i]);
    char words[64];
    snprintf(words, sizeof words, "schema version %d", i ? 999 : future);
    expect_open_error(paths[i], BSA_ERR_FORMAT, words);
    ck_assert_ptr_nonnull(strstr(bsa_last_error(), "newer bsa"));
    bsa_runlog *log;
    ck_assert_int_eq(bsa_runlog_open_existing(paths[i], &log), BSA_ERR_FORMAT);
    assert_unchanged(paths[i], &before);
    db = raw_open(paths[i]);
    ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), i ? 999 : future);
    sqlite3_close(db);
  }
}
END_TEST

/* ---- filters ---------------------------------------------------------------- */

START_TEST(test_filters) {
  const char *p = tpath("filters.db");
  bsa_runlog *log = open_ok(p);
  const char *verbs[] = {"bench", "eval", "maskgen"};
  enum { N = 15 };
  int64_t ids[N];
  int verb_of[N], failed[N];
  char *pval[N];
  char mid[40] = "";
  for (int i = 0; i < N; i++) {
    verb_of[i] = (int)(next_u64() % 3);
    failed[i] = next_u64() % 3 == 0;
    pval[i] = next_u64() % 2 ? strdup("0.1") : tricky();
    char *argv[] = {"bsa", (char *)verbs[verb_of[i]]};
    bsa_run *run;
    ck_assert_int_eq(bsa_runlog_run_begin(log, verbs[verb_of[i]], 2, argv, &run), BSA_OK);
    ids[i] = bsa_run_id(run);
    ck_assert_int_eq(bsa_run_param(run, "density", pval[i]), BSA_OK);
    ck_assert_int_eq(bsa_run_end(run, failed[i] ? BSA_ERR_IO : BSA_OK, NULL), BSA_OK);
    if (i == N / 2) {
      /* A time strictly between run N/2 and run N/2 + 1. */
      usleep(3000);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      struct tm tm;
      gmtime_r(&ts.tv_sec, &tm);
      strftime(mid, 21, "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf(mid + 19, sizeof mid - 19, ".%03dZ", (int)(ts.tv_nsec / 1000000));
      usleep(3000);
    }
  }
  /* Verb and status. */
  for (int v = 0; v < 3; v++) {
    bsa_runlog_filter f = {.verb = verbs[v], .status = "failed"};
    runs *rs = query_runs(log, &f);
    int want = 0;
    for (int i = 0; i < N; i++) want += verb_of[i] == v && failed[i];
    ck_assert_int_eq(rs->n, want);
    for (int k = 0; k < rs->n; k++) {
      ck_assert_str_eq(rs->v[k].verb, verbs[v]);
      ck_assert_str_eq(rs->v[k].status, "failed");
      ck_assert_ptr_nonnull(rs->v[k].error); /* the status text when none given */
    }
  }
  /* Parameter value, exact text (also for values with quotes and newlines). */
  int pick = (int)(next_u64() % N);
  const char *names[1] = {"density"};
  const char *values[1] = {pval[pick]};
  bsa_runlog_filter fp = {.num_params = 1, .param_names = names, .param_values = values};
  runs *rs = query_runs(log, &fp);
  int want = 0;
  for (int i = 0; i < N; i++) want += strcmp(pval[i], pval[pick]) == 0;
  ck_assert_int_eq(rs->n, want);
  /* Dates: since / until around the middle. */
  bsa_runlog_filter fs = {.since = mid};
  rs = query_runs(log, &fs);
  ck_assert_int_eq(rs->n, N - (N / 2 + 1));
  ck_assert_int_eq(rs->v[0].id, ids[N / 2 + 1]);
  bsa_runlog_filter fu = {.until = mid};
  rs = query_runs(log, &fu);
  ck_assert_int_eq(rs->n, N / 2 + 1);
  /* Newest first with a limit. */
  int lim = 1 + (int)(next_u64() % 5);
  bsa_runlog_filter fl = {.limit = lim, .newest_first = 1};
  rs = query_runs(log, &fl);
  ck_assert_int_eq(rs->n, lim);
  for (int k = 0; k < lim; k++) ck_assert_int_eq(rs->v[k].id, ids[N - 1 - k]);
  /* One run by id. */
  bsa_runlog_filter fid = {.run_id = ids[pick]};
  rs = query_runs(log, &fid);
  ck_assert_int_eq(rs->n, 1);
  ck_assert_str_eq(rs->v[0].verb, verbs[verb_of[pick]]);

  /* Metrics across runs for charts: by verb and name, oldest run first. */
  bsa_run *run;
  char *argv[] = {"bsa", "bench"};
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, "speedup", 2.5, NULL, -1, "{\"density\":0.1}"), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, "time_ms", 1.5, NULL, -1, NULL), BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, "speedup", 3.5, NULL, -1, "{\"density\":0.05}"),
                   BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  metrics ms = {0};
  ck_assert_int_eq(bsa_runlog_foreach_metric(log, "bench", "speedup", collect_metric, &ms),
                   BSA_OK);
  ck_assert_int_eq(ms.n, 2);
  ck_assert(ms.v[0].value == 2.5 && ms.v[1].value == 3.5);
  ck_assert_int_lt(ms.v[0].run_id, ms.v[1].run_id);
  ck_assert_str_eq(ms.v[1].labels, "{\"density\":0.05}");
  metrics none = {0};
  ck_assert_int_eq(bsa_runlog_foreach_metric(log, "eval", "speedup", collect_metric, &none),
                   BSA_OK);
  ck_assert_int_eq(none.n, 0);
  bsa_runlog_close(log);
}
END_TEST

/* ---- export ---------------------------------------------------------------- */

/* An RFC 4180 reader, written here to check the writer independently:
 * rows[r][c], fields malloc'ed.  Records end with CRLF. */
typedef struct table {
  char ***rows;
  int *ncols;
  int nrows;
} table;

static table parse_csv(const char *s) {
  table t = {0};
  int cap = 0;
  while (*s) {
    if (t.nrows == cap) {
      cap = cap ? 2 * cap : 16;
      t.rows = realloc(t.rows, (size_t)cap * sizeof *t.rows);
      t.ncols = realloc(t.ncols, (size_t)cap * sizeof *t.ncols);
    }
    char **row = NULL;
    int n = 0;
    for (;;) {
      size_t cap_f = 64, len = 0;
      char *field = malloc(cap_f);
      if (*s == '"') {
        s++;
        for (;;) {
          ck_assert_msg(*s, "unterminated quoted field");
          if (*s == '"' && s[1] == '"') {
            field[len++] = '"';
            s += 2;
          } else if (*s == '"') {
            s++;
            break;
          } else {
            field[len++] = *s++;
          }
          if (len + 1 >= cap_f) field = realloc(field, cap_f *= 2);
        }
      } else {
        while (*s && *s != ',' && *s != '\r' && *s != '\n') {
          field[len++] = *s++;
          if (len + 1 >= cap_f) field = realloc(field, cap_f *= 2);
        }
      }
      field[len] = '\0';
      row = realloc(row, (size_t)(n + 1) * sizeof *row);
      row[n++] = field;
      if (*s == ',') {
        s++;
        continue;
      }
      ck_assert_msg(s[0] == '\r' && s[1] == '\n', "record not ended by CRLF");
      s += 2;
      break;
    }
    t.rows[t.nrows] = row;
    t.ncols[t.nrows++] = n;
  }
  return t;
}

static int col_of(const table *t, const char *name) {
  for (int c = 0; c < t->ncols[0]; c++)
    if (strcmp(t->rows[0][c], name) == 0) return c;
  return -1;
}

static char *export_to_string(bsa_runlog *log, const bsa_runlog_filter *f, const char *metric,
                              bsa_runlog_format fmt) {
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  bsa_status st = bsa_runlog_export(log, f, metric, fmt, out);
  ck_assert_msg(st == BSA_OK, "export: %s", bsa_runlog_last_error(log));
  fclose(out);
  return buf;
}

START_TEST(test_export) {
  const char *p = tpath("export.db");
  bsa_runlog *log = open_ok(p);
  char *argv[] = {"bsa", "eval"};
  /* Run A: tricky parameter values, labelled per-head metrics. */
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  int64_t a = bsa_run_id(run);
  char *pv = tricky(), *rec = tricky(), *lab = tricky();
  ck_assert_int_eq(bsa_run_param(run, "method", pv), BSA_OK);
  ck_assert_int_eq(bsa_run_param(run, "top_p", "0.9"), BSA_OK);
  enum { NM = 6 };
  double v[NM];
  char labels[NM][512];
  for (int i = 0; i < NM; i++) {
    v[i] = (next_unit() - 0.3) * pow(10, (double)(next_u64() % 12) - 6);
    /* Label text with quotes and newlines, escaped for JSON. */
    char *esc = calloc(1, 1024);
    for (const char *c = lab; *c; c++) {
      if (*c == '"' || *c == '\\') strncat(esc, "\\", 2);
      if (*c == '\n') {
        strcat(esc, "\\n");
        continue;
      }
      if (*c == '\r') {
        strcat(esc, "\\r");
        continue;
      }
      if (*c == '\t') {
        strcat(esc, "\\t");
        continue;
      }
      strncat(esc, c, 1);
    }
    snprintf(labels[i], sizeof labels[i], "{\"note\":\"%s\",\"density\":0.1,\"k\":%d}", esc, i);
    free(esc);
    ck_assert_int_eq(bsa_run_metric(run, i % 2 ? "recall" : "rel_l2", v[i], rec, i, labels[i]),
                     BSA_OK);
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  /* Run B: another parameter, a metric without labels; run C: no metrics. */
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  int64_t b = bsa_run_id(run);
  ck_assert_int_eq(bsa_run_param(run, "seq", "8192"), BSA_OK);
  double tb = next_unit();
  ck_assert_int_eq(bsa_run_metric(run, "time_ms", tb, NULL, -1, NULL), BSA_OK);
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  int64_t c = bsa_run_id(run);
  ck_assert_int_eq(bsa_run_end(run, BSA_ERR_NOMEM, "ran out"), BSA_OK);

  /* CSV */
  char *csv = export_to_string(log, NULL, NULL, BSA_RUNLOG_FORMAT_CSV);
  table t = parse_csv(csv);
  ck_assert_int_eq(t.nrows, 1 + NM + 1 + 1);
  for (int r = 0; r < t.nrows; r++) ck_assert_int_eq(t.ncols[r], t.ncols[0]);
  const char *want_cols[] = {"run_id", "verb", "status", "started_at", "ended_at", "host",
                             "device", "device_driver", "bsa_version", "param.method",
                             "param.seq", "param.top_p", "metric", "value", "record", "head",
                             "label.density", "label.k", "label.note"};
  ck_assert_int_eq(t.ncols[0], (int)(sizeof want_cols / sizeof want_cols[0]));
  for (int k = 0; k < t.ncols[0]; k++) ck_assert_str_eq(t.rows[0][k], want_cols[k]);
  for (int i = 0; i < NM; i++) {
    char **row = t.rows[1 + i];
    ck_assert_int_eq(atoll(row[col_of(&t, "run_id")]), a);
    ck_assert_str_eq(row[col_of(&t, "param.method")], pv);
    ck_assert_str_eq(row[col_of(&t, "param.seq")], "");
    ck_assert_str_eq(row[col_of(&t, "record")], rec);
    ck_assert_str_eq(row[col_of(&t, "label.note")], lab);
    ck_assert_str_eq(row[col_of(&t, "label.density")], "0.1");
    ck_assert_int_eq(atoi(row[col_of(&t, "label.k")]), i);
    ck_assert_int_eq(atoi(row[col_of(&t, "head")]), i);
    ck_assert_str_eq(row[col_of(&t, "metric")], i % 2 ? "recall" : "rel_l2");
    ck_assert_msg(strtod(row[col_of(&t, "value")], NULL) == v[i], "value %s != %.17g",
                  row[col_of(&t, "value")], v[i]);
  }
  char **rb = t.rows[1 + NM];
  ck_assert_int_eq(atoll(rb[0]), b);
  ck_assert_str_eq(rb[col_of(&t, "param.seq")], "8192");
  ck_assert_str_eq(rb[col_of(&t, "head")], "");
  ck_assert_str_eq(rb[col_of(&t, "label.note")], "");
  ck_assert(strtod(rb[col_of(&t, "value")], NULL) == tb);
  char **rc = t.rows[2 + NM];
  ck_assert_int_eq(atoll(rc[0]), c);
  ck_assert_str_eq(rc[col_of(&t, "status")], "failed");
  ck_assert_str_eq(rc[col_of(&t, "metric")], "");
  ck_assert_str_eq(rc[col_of(&t, "value")], "");

  /* JSON: the same table as an array of flat objects. */
  char *js = export_to_string(log, NULL, NULL, BSA_RUNLOG_FORMAT_JSON);
  json_error_t jerr;
  json_t *arr = json_loads(js, 0, &jerr);
  ck_assert_msg(json_is_array(arr), "JSON export does not parse: %s", jerr.text);
  ck_assert_int_eq((int)json_array_size(arr), NM + 2);
  for (int i = 0; i < NM; i++) {
    json_t *o = json_array_get(arr, (size_t)i);
    ck_assert_int_eq((int)json_object_size(o), t.ncols[0]);
    ck_assert_str_eq(json_string_value(json_object_get(o, "param.method")), pv);
    ck_assert(json_is_null(json_object_get(o, "param.seq")));
    ck_assert_str_eq(json_string_value(json_object_get(o, "label.note")), lab);
    ck_assert(json_real_value(json_object_get(o, "label.density")) == 0.1);
    ck_assert(json_number_value(json_object_get(o, "value")) == v[i]);
    ck_assert_int_eq((int)json_integer_value(json_object_get(o, "head")), i);
  }
  json_t *oc = json_array_get(arr, NM + 1);
  ck_assert(json_is_null(json_object_get(oc, "metric")));
  ck_assert(json_is_null(json_object_get(oc, "value")));
  json_decref(arr);

  /* Filtered: one metric of one verb. */
  bsa_runlog_filter f = {.verb = "eval"};
  char *only = export_to_string(log, &f, "recall", BSA_RUNLOG_FORMAT_CSV);
  table t2 = parse_csv(only);
  ck_assert_int_eq(t2.nrows, 1 + NM / 2);
  ck_assert_int_eq(col_of(&t2, "param.seq"), -1);

  /* One run as a line of JSON, with everything. */
  char *line = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&line, &len);
  ck_assert_int_eq(bsa_runlog_write_run_json(log, a, 1, out), BSA_OK);
  fclose(out);
  ck_assert_int_eq(line[len - 1], '\n');
  ck_assert(strchr(line, '\n') == line + len - 1); /* exactly one line */
  json_t *o = json_loads(line, 0, &jerr);
  ck_assert_msg(json_is_object(o), "run JSON: %s", jerr.text);
  ck_assert_int_eq((int)json_integer_value(json_object_get(o, "id")), a);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "params"), "method")),
                   pv);
  json_t *jm = json_object_get(o, "metrics");
  ck_assert_int_eq((int)json_array_size(jm), NM);
  ck_assert(json_number_value(json_object_get(json_array_get(jm, 2), "value")) == v[2]);
  ck_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_array_get(jm, 2), "labels"), "note")),
      lab);
  ck_assert(json_is_array(json_object_get(o, "argv")));
  json_decref(o);
  bsa_runlog_close(log);
}
END_TEST

static Suite *runlog_suite(void) {
  Suite *s = suite_create("runlog");
  TCase *tc = tcase_create("record");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_sha256_known_answer);
  tcase_add_test(tc, test_roundtrip_exact);
  tcase_add_test(tc, test_nonfinite_values);
  tcase_add_test(tc, test_bad_arguments);
  suite_add_tcase(s, tc);

  tc = tcase_create("schema");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_new_log_schema);
  tcase_add_test(tc, test_migrate_v1);
  tcase_add_test(tc, test_migration_is_atomic);
  suite_add_tcase(s, tc);

  tc = tcase_create("processes");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_concurrent_writers);
  tcase_add_test(tc, test_sigkill_interrupted);
  tcase_add_test(tc, test_interrupted_rules);
  tcase_add_test(tc, test_finished_runs_frozen);
  suite_add_tcase(s, tc);

  tc = tcase_create("bad paths");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_missing_folder);
  tcase_add_test(tc, test_readonly_places);
  tcase_add_test(tc, test_not_sqlite);
  tcase_add_test(tc, test_foreign_sqlite);
  tcase_add_test(tc, test_newer_schema);
  suite_add_tcase(s, tc);

  tc = tcase_create("queries");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_filters);
  tcase_add_test(tc, test_export);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(runlog_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
