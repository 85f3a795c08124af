/*
 * tools/bench_common.c - output and timing shared by the bench modes.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "bench.h"

/* v as a JSON string literal, quotes and escapes included (record names and
 * methods come from files).  The result lives until the next call with the
 * same slot. */
static const char *jstr(int slot, const char *v) {
  static char *buf[2];
  json_t *js = json_string(v ? v : "");
  free(buf[slot]);
  buf[slot] = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
  json_decref(js);
  return buf[slot] ? buf[slot] : "\"\"";
}

/* The labels that place a result: the same object goes into every metric of
 * the row in the experiment log. */
static char *row_labels(const bench_row *r) {
  json_t *o = json_object();
  json_object_set_new(o, "device", json_string(r->device));
  json_object_set_new(o, "layout", json_string(r->layout));
  json_object_set_new(o, "seq", json_integer(r->seq));
  json_object_set_new(o, "heads", json_integer(r->heads));
  json_object_set_new(o, "kv_heads", json_integer(r->kv_heads));
  json_object_set_new(o, "head_dim", json_integer(r->head_dim));
  json_object_set_new(o, "dtype", json_string(r->dtype));
  json_object_set_new(o, "causal", json_integer(r->causal));
  if (!isnan(r->density_target))
    json_object_set_new(o, "density_target", json_real(r->density_target));
  if (r->block) json_object_set_new(o, "block", json_integer(r->block));
  if (r->qkv_layout) json_object_set_new(o, "qkv_layout", json_string(r->qkv_layout));
  if (r->grid) json_object_set_new(o, "blocks", json_string(r->grid));
  if (r->method) json_object_set_new(o, "method", json_string(r->method));
  char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  json_decref(o);
  return text;
}

void bench_print_header(const bench_opts *o) {
  if (o->json) return;
  printf("%-6s %-6s %-10s %7s %6s %5s %5s %8s %8s %10s %10s %8s %8s %9s\n", "device", "layout",
         "record", "seq", "heads", "D", "dtype", "target", "density", "time_ms", "dense_ms",
         "speedup", "vs_dense", "TFLOP/s");
}

void bench_row_init(bench_row *r, const bench_opts *o, const char *layout, const bsa_attn_params *p,
                    const bsa_plan *plan, double ms, double dense_ms) {
  memset(r, 0, sizeof *r);
  bsa_plan_info info;
  bsa_plan_get_info(plan, &info);
  r->device = o->device == BSA_DEVICE_CUDA ? "cuda" : "cpu";
  r->layout = layout;
  r->seq = p->kv_len;
  r->heads = p->num_qo_heads;
  r->kv_heads = p->num_kv_heads;
  r->head_dim = p->head_dim;
  r->dtype = bsa_dtype_name(p->q_dtype);
  r->causal = p->causal;
  r->qkv_layout = p->layout == BSA_LAYOUT_HND ? "hnd" : "nhd";
  r->density_target = NAN;
  r->density = info.density;
  r->time_ms = ms;
  r->dense_time_ms = dense_ms;
  r->tflops_effective = bsa_plan_flops(plan) / (ms * 1e-3) / 1e12;
}

void bench_emit(bsa_cli *cli, const bench_opts *o, const bench_row *r) {
  double speedup = r->time_ms > 0 ? r->dense_time_ms / r->time_ms : 0;
  /* The effective rate over dense attention's rate in the same run: the
   * fraction of dense speed kept per useful FLOP (1 = no sparse overhead). */
  double vs_dense = r->density * speedup;
  if (o->json) {
    printf("{\"device\":\"%s\",\"layout\":\"%s\",", r->device, r->layout);
    if (r->record) printf("\"record\":%s,\"method\":%s,", jstr(0, r->record), jstr(1, r->method));
    printf(
        "\"seq\":%lld,\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"dtype\":\"%s\","
        "\"causal\":%s,",
        (long long)r->seq, r->heads, r->kv_heads, r->head_dim, r->dtype,
        r->causal ? "true" : "false");
    if (r->qkv_layout) printf("\"qkv_layout\":\"%s\",", r->qkv_layout);
    if (isnan(r->density_target))
      printf("\"density_target\":null,");
    else
      printf("\"density_target\":%.6g,", r->density_target);
    if (r->block) printf("\"block\":%lld,", (long long)r->block);
    if (r->grid) printf("\"blocks\":\"%s\",", r->grid);
    printf(
        "\"density\":%.6g,\"time_ms\":%.6g,\"dense_time_ms\":%.6g,\"speedup\":%.6g,"
        "\"vs_dense\":%.6g,\"tflops_effective\":%.6g,\"run_id\":%lld}\n",
        r->density, r->time_ms, r->dense_time_ms, speedup, vs_dense, r->tflops_effective,
        (long long)cli_run_id(cli));
  } else {
    char target[32];
    if (isnan(r->density_target))
      snprintf(target, sizeof target, "-");
    else
      snprintf(target, sizeof target, "%.3g", r->density_target);
    printf("%-6s %-6s %-10.10s %7lld %2d/%-3d %5d %5s %8s %8.4f %10.3f %10.3f %7.2fx %8.2f %9.4f\n",
           r->device, r->layout, r->record ? r->record : "-", (long long)r->seq, r->heads,
           r->kv_heads, r->head_dim, r->dtype, target, r->density, r->time_ms, r->dense_time_ms,
           speedup, vs_dense, r->tflops_effective);
  }
  fflush(stdout);

  char *labels = row_labels(r);
  cli_metric(cli, "density", r->density, r->record, -1, labels);
  cli_metric(cli, "time_ms", r->time_ms, r->record, -1, labels);
  cli_metric(cli, "dense_time_ms", r->dense_time_ms, r->record, -1, labels);
  cli_metric(cli, "speedup", speedup, r->record, -1, labels);
  cli_metric(cli, "vs_dense", vs_dense, r->record, -1, labels);
  cli_metric(cli, "tflops_effective", r->tflops_effective, r->record, -1, labels);
  free(labels);
}

int bench_time_plan(bsa_cli *cli, bsa_plan *plan, const bench_opts *o, const void *q, const void *k,
                    const void *v, void *out, double *ms) {
  bsa_status st = bsa_plan_time(plan, q, k, v, out, NULL, o->warmup, o->reps, ms, NULL);
  if (st != BSA_OK) return cli_error(cli, BSA_EXIT_FAIL, "timing failed: %s", bsa_last_error());
  return 0;
}

double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
