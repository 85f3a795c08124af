/*
 * lib/worklist.c - compiles a sparsity description into the work list.
 *
 * An item covers query rows [q_begin, q_end) of one kv head (all query heads
 * of its group) that share one list of KV segments.  Items never cross a
 * block row, so every row of an item sees the same blocks; they are at most
 * tile_q rows high.  Segments merge adjacent kept blocks into contiguous key
 * ranges, are clipped to the causal bound of the item's last row, and are
 * flagged when some element inside needs masking (causal diagonal or a
 * per-element BSR mask).  Every query row belongs to exactly one item per kv
 * head, including rows with no visible key (zero segments), so the backends
 * write every output row.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct builder {
  bsa_plan *plan;
  bsa__work_item *items;
  int64_t n_items, cap_items;
  bsa__segment *segs;
  int64_t n_segs, cap_segs;
  int64_t visible; /* pairs per kv-head row (not yet times group) */
  int64_t masked;
  int64_t max_rows;
  int oom;   /* 1: out of memory, 2: a fixed region was miscounted (a bug) */
  int fixed; /* items and segments live in a preallocated region: never grow */
} builder;

/* Allocates room for at least n_items items and n_segs segments. */
static int reserve(builder *b, int64_t n_items, int64_t n_segs) {
  if (n_items > b->cap_items) {
    bsa__work_item *it = realloc(b->items, sizeof *it * (size_t)n_items);
    if (!it) return 0;
    b->items = it;
    b->cap_items = n_items;
  }
  if (n_segs > b->cap_segs) {
    bsa__segment *sg = realloc(b->segs, sizeof *sg * (size_t)n_segs);
    if (!sg) return 0;
    b->segs = sg;
    b->cap_segs = n_segs;
  }
  return 1;
}

static bsa__segment *seg_push(builder *b) {
  if (b->n_segs == b->cap_segs) {
    if (b->fixed) {
      b->oom = 2; /* the region was sized exactly */
      return NULL;
    }
    int64_t cap = b->cap_segs ? b->cap_segs * 2 : 1024;
    bsa__segment *s = realloc(b->segs, sizeof *s * (size_t)cap);
    if (!s) {
      b->oom = 1;
      return NULL;
    }
    b->segs = s;
    b->cap_segs = cap;
  }
  return &b->segs[b->n_segs++];
}

static bsa__work_item *item_push(builder *b) {
  if (b->n_items == b->cap_items) {
    if (b->fixed) {
      b->oom = 2; /* the region was sized exactly */
      return NULL;
    }
    int64_t cap = b->cap_items ? b->cap_items * 2 : 256;
    bsa__work_item *s = realloc(b->items, sizeof *s * (size_t)cap);
    if (!s) {
      b->oom = 1;
      return NULL;
    }
    b->items = s;
    b->cap_items = cap;
  }
  return &b->items[b->n_items++];
}

/* Number of (row, key) pairs with row in [q0, q1), key in [kb, ke) and
 * key <= row + off. */
static int64_t causal_pairs(int64_t q0, int64_t q1, int64_t kb, int64_t ke, int64_t off) {
  int64_t total = 0;
  /* Rows where the bound row + off + 1 lies inside (kb, ke) contribute a
   * partial count; rows above see nothing, rows below see all. */
  for (int64_t r = q0; r < q1; r++) {
    int64_t lim = r + off + 1; /* keys < lim are visible */
    if (lim <= kb) continue;
    if (lim >= ke) {
      total += (ke - kb) * (q1 - r);
      break;
    }
    total += lim - kb;
  }
  return total;
}

/* Source of kept column ranges for one block row. */
typedef struct colrange {
  int64_t begin, end;
  int64_t mask_offset; /* -1 when the block has no element mask */
} colrange;

/* Merges adjacent ranges without element masks in place (a masked block
 * stays a segment of its own) and drops empty ones; returns the count. */
static int64_t merge_cols(colrange *cols, int64_t n) {
  int64_t m = 0;
  for (int64_t c = 0; c < n; c++) {
    if (cols[c].end <= cols[c].begin) continue;
    if (m > 0 && cols[c].mask_offset < 0 && cols[m - 1].mask_offset < 0 &&
        cols[m - 1].end == cols[c].begin)
      cols[m - 1].end = cols[c].end;
    else
      cols[m++] = cols[c];
  }
  return m;
}

/* Emits the items of rows [r0, r1) of one block row, which all see the
 * column ranges cols[] (sorted by begin; merged here, in place). */
static void emit_rows(builder *b, int32_t kv_head, int64_t r0, int64_t r1, int64_t block_row0,
                      colrange *cols, int64_t ncols, int64_t tile_q) {
  const bsa_attn_params *p = &b->plan->p;
  const int64_t off = p->kv_len - p->qo_len;
  ncols = merge_cols(cols, ncols);
  int shared = !p->causal;
  for (int64_t c = 0; c < ncols && shared; c++) shared = cols[c].mask_offset < 0;
  if (shared) {
    /* Without causal clipping or element masks every tile of the block row
     * sees the same segments: store them once and let the items share them. */
    const int64_t seg_offset = b->n_segs;
    int64_t keys = 0;
    for (int64_t c = 0; c < ncols; c++) {
      bsa__segment *sg = seg_push(b);
      if (!sg) return;
      *sg = (bsa__segment){cols[c].begin, cols[c].end, 0, 0, 0};
      keys += cols[c].end - cols[c].begin;
    }
    for (int64_t q0 = r0; q0 < r1; q0 += tile_q) {
      const int64_t q1 = q0 + tile_q < r1 ? q0 + tile_q : r1;
      bsa__work_item *it = item_push(b);
      if (!it) return;
      *it = (bsa__work_item){kv_head, (int32_t)ncols, q0, q1, seg_offset, (q1 - q0) * keys};
      if (q1 - q0 > b->max_rows) b->max_rows = q1 - q0;
      b->visible += (q1 - q0) * keys;
    }
    return;
  }
  /* Otherwise each tile clips the ranges to its causal bound and flags the
   * segments whose elements need masking. */
  for (int64_t q0 = r0; q0 < r1; q0 += tile_q) {
    const int64_t q1 = q0 + tile_q < r1 ? q0 + tile_q : r1;
    const int64_t rows = q1 - q0;
    bsa__work_item *it = item_push(b);
    if (!it) return;
    *it = (bsa__work_item){kv_head, 0, q0, q1, b->n_segs, 0};
    if (rows > b->max_rows) b->max_rows = rows;
    for (int64_t c = 0; c < ncols; c++) {
      const int64_t kb = cols[c].begin, moff = cols[c].mask_offset;
      int64_t ke = cols[c].end;
      int32_t flags = 0;
      if (p->causal) {
        const int64_t lim = q1 + off; /* keys < lim are visible to the last row */
        if (lim < ke) ke = lim;
        if (ke <= kb) continue;
        if (ke > q0 + off + 1) flags |= BSA__SEG_CAUSAL;
      }
      if (moff >= 0) flags |= BSA__SEG_ELEMASK;
      bsa__segment *sg = seg_push(b);
      if (!sg) return;
      *sg = (bsa__segment){kb, ke, moff >= 0 ? moff : 0, flags, (int32_t)(q0 - block_row0)};
      it->num_segments++; /* seg_push never moves the items */
      it->cost += rows * (ke - kb);
      if (flags) b->masked++;
      int64_t pairs =
          (flags & BSA__SEG_CAUSAL) ? causal_pairs(q0, q1, kb, ke, off) : rows * (ke - kb);
      if (moff >= 0) {
        /* Count kept elements exactly (per-element mask, plus causal). */
        const uint8_t *m = b->plan->mask + moff;
        const int64_t C = b->plan->C;
        pairs = 0;
        for (int64_t r = q0; r < q1; r++) {
          const uint8_t *mr = m + (sg->mask_row0 + (r - q0)) * C;
          for (int64_t j = kb; j < ke; j++)
            if (mr[j - kb] && (!p->causal || j <= r + off)) pairs++;
        }
      }
      b->visible += pairs;
    }
  }
}

/* Orders items by kv head, and within a head longest first (cost
 * descending), ties in the order they were made (rows): a stable LSD radix
 * sort, three passes of 11 bits on the cost (costs above 2^33 - 1 counted
 * as equal: they are far longer than anything else anyway), then one
 * counting pass on the kv head.  Head by head, the CPU backend's threads
 * work on one head's K and V together, which then stay in cache (a global
 * longest-first order mixes all heads: variable 64x64 blocks at density 0.1
 * ran 7% slower with it, docs/PERF.md); within the last head longest first
 * still keeps the threads' finish times close.  qsort costs more than the
 * rest of the build for plans of ~10^4 items.  Returns 0 when out of
 * memory. */
static int sort_items(builder *b, int32_t num_kv_heads) {
  const int64_t n = b->n_items;
  if (n < 2) return 1;
  bsa__work_item *tmp = malloc(sizeof *tmp * (size_t)n);
  if (!tmp) return 0;
  const uint64_t cap = ((uint64_t)1 << 33) - 1;
  bsa__work_item *src = b->items, *dst = tmp;
  for (int pass = 0; pass < 3; pass++) {
    int64_t count[2049] = {0};
    const int shift = 11 * pass;
    for (int64_t i = 0; i < n; i++) {
      uint64_t c = (uint64_t)src[i].cost > cap ? cap : (uint64_t)src[i].cost;
      count[((cap - c) >> shift & 2047) + 1]++;
    }
    for (int k = 0; k < 2048; k++) count[k + 1] += count[k];
    for (int64_t i = 0; i < n; i++) {
      uint64_t c = (uint64_t)src[i].cost > cap ? cap : (uint64_t)src[i].cost;
      dst[count[(cap - c) >> shift & 2047]++] = src[i];
    }
    bsa__work_item *t = src;
    src = dst;
    dst = t;
  }
  /* Stable by kv head: three passes left the result in tmp, this one
   * moves it back into b->items. */
  int64_t *hcount = calloc((size_t)num_kv_heads + 1, sizeof *hcount);
  if (!hcount) {
    free(tmp);
    return 0;
  }
  for (int64_t i = 0; i < n; i++) hcount[src[i].kv_head + 1]++;
  for (int32_t h = 0; h < num_kv_heads; h++) hcount[h + 1] += hcount[h];
  for (int64_t i = 0; i < n; i++) dst[hcount[src[i].kv_head]++] = src[i];
  free(hcount);
  free(tmp);
  return 1;
}

static int cmp_colrange(const void *pa, const void *pb) {
  const colrange *a = pa, *b = pb;
  return (a->begin > b->begin) - (a->begin < b->begin);
}

/* Kept-column scan of a variable-block map row, eight columns a step:
 * the eight map bytes become an 8-bit mask (bit k: column k kept), and
 * kept_pos[mask] lists the set bits as two 4-lane vectors, so the step
 * writes eight candidate indices (two vector stores) and advances by their
 * count: one dependent add per eight columns instead of one per column
 * (random maps defeat branches). */
typedef int32_t v4i32 __attribute__((vector_size(16)));
static v4i32 kept_pos[256][2]; /* set bit positions, then zeros */
static uint8_t kept_num[256];
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static void kept_init(void) {
  for (int m = 0; m < 256; m++) {
    int32_t pos[8] = {0};
    int n = 0;
    for (int k = 0; k < 8; k++)
      if (m >> k & 1) pos[n++] = k;
    memcpy(kept_pos[m], pos, sizeof pos);
    kept_num[m] = (uint8_t)n;
  }
}

/* Bit 7 of each byte of w set where that byte is nonzero. */
static inline uint64_t nonzero_bytes(uint64_t w) {
  return (((w & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | w) & 0x8080808080808080ull;
}

/* Nonzero bytes of map[0 .. n), eight a step. */
static int64_t count_nonzero(const uint8_t *map, int64_t n) {
  int64_t c = 0, e = 0;
  for (; e + 8 <= n; e += 8) {
    uint64_t w;
    memcpy(&w, map + e, 8);
    c += (int64_t)((nonzero_bytes(w) >> 7) * 0x0101010101010101ull >> 56); /* byte sum */
  }
  for (; e < n; e++) c += map[e] != 0;
  return c;
}

/* Writes the indices j < nb with row[j] != 0 to kept (which has room for
 * nb + 8 entries) and returns their count. */
static int64_t scan_kept(const uint8_t *row, int64_t nb, int32_t *kept) {
  int64_t n = 0, j = 0;
  for (; j + 8 <= nb; j += 8) {
    uint64_t w;
    memcpy(&w, row + j, 8);
    const unsigned m = (unsigned)((nonzero_bytes(w) >> 7) * 0x0102040810204080ull >> 56);
    const v4i32 base = {(int32_t)j, (int32_t)j, (int32_t)j, (int32_t)j};
    const v4i32 lo = kept_pos[m][0] + base, hi = kept_pos[m][1] + base;
    memcpy(kept + n, &lo, sizeof lo); /* two 16-byte stores */
    memcpy(kept + n + 4, &hi, sizeof hi);
    n += kept_num[m];
  }
  for (; j < nb; j++) {
    kept[n] = (int32_t)j;
    n += row[j] != 0;
  }
  return n;
}

/* One share of a variable-block build: kv heads [h0, h1) into b. */
typedef struct var_part {
  builder b;
  const bsa_var_desc *var;
  int64_t tile_q;
  int32_t h0, h1;
} var_part;

static void var_heads(var_part *vp) {
  builder *b = &vp->b;
  const bsa_var_desc *var = vp->var;
  const int64_t MB = var->num_block_rows, NB = var->num_block_cols;
  colrange *cols = malloc(sizeof *cols * (size_t)NB);
  int64_t *cstart = malloc(sizeof *cstart * (size_t)(NB + 1)); /* first key of each column */
  int32_t *kept = malloc(sizeof *kept * (size_t)(NB + 8));     /* kept columns of a row */
  if (!cols || !cstart || !kept) b->oom = 1;
  for (int32_t h = vp->h0; h < vp->h1 && !b->oom; h++) {
    const int32_t *rs = var->block_row_sz + (int64_t)h * MB;
    const int32_t *cs = var->block_col_sz + (int64_t)h * NB;
    cstart[0] = 0;
    for (int64_t j = 0; j < NB; j++) cstart[j + 1] = cstart[j] + cs[j];
    int64_t r0 = 0;
    for (int64_t i = 0; i < MB && !b->oom; i++) {
      const uint8_t *mrow = var->block_mask_map + ((int64_t)h * MB + i) * NB;
      /* Zero-size column blocks stay in: emit_rows drops their empty
       * ranges when it merges the row's ranges. */
      const int64_t n = scan_kept(mrow, NB, kept);
      for (int64_t k = 0; k < n; k++)
        cols[k] = (colrange){cstart[kept[k]], cstart[kept[k] + 1], -1};
      const int64_t r1 = r0 + rs[i];
      if (r1 > r0) emit_rows(b, h, r0, r1, r0, cols, n, vp->tile_q);
      r0 = r1;
    }
  }
  free(cols);
  free(cstart);
  free(kept);
}

static void *var_heads_thread(void *arg) {
  var_heads(arg);
  return NULL;
}

/* Maps smaller than this (entries) are built on the calling thread alone. */
#define VAR_PARALLEL_MIN (1 << 16)

/* Variable blocks.  The arrays are sized once: items exactly, segments by
 * the kept blocks (exact without causal clipping, where a block row's
 * tiles share their segments; growing them by doubling copied and faulted
 * large plans in twice).  Without causal clipping, large maps are built by
 * bsa__plan_threads() threads (at most 8, at most num_threads), each
 * over a range of kv heads writing into its own region of the arrays:
 * items of all regions are contiguous (their counts are exact), segments
 * may leave gaps between regions (items refer to them by offset; nothing
 * walks the segment array). */
static void build_var(builder *b, const bsa_var_desc *var, int64_t tile_q) {
  const bsa_attn_params *p = &b->plan->p;
  const int32_t H = p->num_kv_heads;
  const int64_t MB = var->num_block_rows, NB = var->num_block_cols;
  pthread_once(&kept_once, kept_init);
  int64_t *h_items = malloc(sizeof(int64_t) * (size_t)H * 2), *h_kept = h_items + H;
  if (!h_items) {
    b->oom = 1;
    return;
  }
  int64_t n_items = 0, n_kept = 0;
  for (int32_t h = 0; h < H; h++) {
    h_items[h] = 0;
    for (int64_t i = 0; i < MB; i++)
      h_items[h] += (var->block_row_sz[(int64_t)h * MB + i] + tile_q - 1) / tile_q;
    h_kept[h] = count_nonzero(var->block_mask_map + (int64_t)h * MB * NB, MB * NB);
    n_items += h_items[h];
    n_kept += h_kept[h];
  }
  if (!reserve(b, n_items, p->causal ? 2 * n_kept : n_kept)) {
    free(h_items);
    b->oom = 1;
    return;
  }
  int parts = bsa__plan_threads(b->plan->ctx);
  if (parts > H) parts = H;
  if (p->causal || (int64_t)H * MB * NB < VAR_PARALLEL_MIN) parts = 1;
  if (parts == 1) {
    var_part one = {*b, var, tile_q, 0, H};
    var_heads(&one);
    *b = one.b;
    free(h_items);
    return;
  }
  var_part vp[BSA__PLAN_MAX_THREADS];
  memset(vp, 0, sizeof vp);
  pthread_t th[BSA__PLAN_MAX_THREADS];
  int started[BSA__PLAN_MAX_THREADS] = {0};
  int64_t item0 = 0, seg0 = 0, seg_first[BSA__PLAN_MAX_THREADS];
  for (int k = 0; k < parts; k++) {
    const int32_t h0 = (int32_t)((int64_t)H * k / parts),
                  h1 = (int32_t)((int64_t)H * (k + 1) / parts);
    int64_t ni = 0, nk = 0;
    for (int32_t h = h0; h < h1; h++) ni += h_items[h], nk += h_kept[h];
    vp[k] = (var_part){*b, var, tile_q, h0, h1};
    vp[k].b.fixed = 1;
    vp[k].b.n_items = item0;
    vp[k].b.cap_items = item0 + ni;
    vp[k].b.n_segs = seg_first[k] = seg0;
    vp[k].b.cap_segs = seg0 + nk;
    item0 += ni;
    seg0 += nk;
  }
  for (int k = 1; k < parts; k++)
    started[k] = pthread_create(&th[k], NULL, var_heads_thread, &vp[k]) == 0;
  var_heads(&vp[0]);
  for (int k = 1; k < parts; k++) {
    if (started[k])
      pthread_join(th[k], NULL);
    else
      var_heads(&vp[k]); /* no thread to be had: on this one */
  }
  /* One builder again: n_segs counts the segments in use. */
  b->n_items = n_items;
  b->n_segs = 0;
  for (int k = 0; k < parts; k++) {
    const builder *pb = &vp[k].b;
    if (pb->oom) b->oom = 1;
    if (!b->oom && pb->n_items != pb->cap_items) b->oom = 2; /* miscounted region */
    b->n_segs += pb->n_segs - seg_first[k];
    b->visible += pb->visible;
    b->masked += pb->masked;
    if (pb->max_rows > b->max_rows) b->max_rows = pb->max_rows;
  }
  free(h_items);
}

bsa_status bsa__worklist_build(bsa_plan *plan, const bsa_bsr_desc *bsr, const bsa_var_desc *var,
                               int64_t tile_q, int head_order) {
  const bsa_attn_params *p = &plan->p;
  builder b;
  memset(&b, 0, sizeof b);
  b.plan = plan;
  if (tile_q < 1) tile_q = BSA__CPU_TILE_Q;
  const int64_t M = p->qo_len, N = p->kv_len;
  colrange *cols = NULL;

  if (!bsr && !var) {
    colrange all = {0, N, -1};
    for (int32_t h = 0; h < p->num_kv_heads && !b.oom; h++)
      emit_rows(&b, h, 0, M, 0, &all, 1, tile_q);
  } else if (bsr) {
    const int64_t R = bsr->R, C = bsr->C;
    const int64_t MB = (M + R - 1) / R;
    const int64_t NB = (N + C - 1) / C;
    cols = malloc(sizeof *cols * (size_t)(NB > 0 ? NB : 1));
    if (!cols) b.oom = 1;
    for (int32_t h = 0; h < p->num_kv_heads && !b.oom; h++) {
      const int32_t *ip = bsr->indptr + (bsr->per_kv_head ? (int64_t)h * (MB + 1) : 0);
      for (int64_t i = 0; i < MB && !b.oom; i++) {
        int64_t n = 0;
        for (int64_t e = ip[i]; e < ip[i + 1]; e++) {
          int64_t c = bsr->indices[e];
          cols[n].begin = c * C;
          cols[n].end = (c + 1) * C < N ? (c + 1) * C : N;
          cols[n].mask_offset = bsr->mask ? e * R * C : -1;
          n++;
        }
        if (n > 1) qsort(cols, (size_t)n, sizeof *cols, cmp_colrange);
        int64_t r0 = i * R, r1 = (i + 1) * R < M ? (i + 1) * R : M;
        emit_rows(&b, h, r0, r1, r0, cols, n, tile_q);
      }
    }
  } else {
    build_var(&b, var, tile_q);
  }
  free(cols);
  if (b.oom || (head_order && !sort_items(&b, p->num_kv_heads))) {
    free(b.items);
    free(b.segs);
    if (b.oom == 2)
      return bsa__fail(plan->ctx, BSA_ERR_INTERNAL,
                       "plan: the threaded work-list build miscounted its items");
    return bsa__fail(plan->ctx, BSA_ERR_NOMEM, "plan: out of memory building the work list");
  }
  plan->items = b.items;
  plan->num_items = b.n_items;
  plan->segs = b.segs;
  plan->num_segs = b.n_segs;
  plan->max_item_rows = b.max_rows;

  const int64_t group = p->num_qo_heads / p->num_kv_heads;
  bsa_plan_info *info = &plan->info;
  info->visible_pairs = b.visible * group;
  if (p->causal)
    info->total_pairs = causal_pairs(0, M, 0, N, N - M) * p->num_qo_heads;
  else
    info->total_pairs = M * N * (int64_t)p->num_qo_heads;
  info->density = info->total_pairs ? (double)info->visible_pairs / (double)info->total_pairs : 0.0;
  info->num_work_items = b.n_items;
  info->num_segments = b.n_segs;
  info->masked_segments = b.masked;
  return BSA_OK;
}
