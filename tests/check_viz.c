/*
 * tests/check_viz.c - the visualisation module (viz/), checked on the PNG
 * files it writes: each is decoded here with libpng and facts are read off
 * the pixels.
 *
 * - the colour map runs through the published viridis anchors with rising
 *   lightness;
 * - mask figures: image size, the colour at the centre of kept and dropped
 *   blocks at known token coordinates (variable and zero block sizes,
 *   scores on linear and log scales, no scores), the token-order view
 *   against permutations inverted here by search, area averaging of a
 *   75k-token mask with ~1000 blocks (the mean colour, and single pixels
 *   against coverages computed here);
 * - text chunks: Software, Title and the caller's keys, non-ASCII values;
 * - block attention mass and mask recall against double-precision loops;
 *   the score map's pixels against those masses;
 * - charts: markers where the geometry says; speedup and recall charts from
 *   a real experiment log (failed runs and the dense baseline left out);
 * - errors: unwritable paths, folders, bad records, empty logs, with the
 *   argument named, no file left behind and an existing file unchanged.
 * Inputs are fresh random values for every check (the seed is printed on
 * failure).
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bsa.h"
#include "bsa/runlog.h"
#include "bsa/trace.h"
#include "bsa/viz.h"
#include "test_rand.h"


/* A temporary folder for one check, removed with its files at the end. */
static char g_dir[256];
static void make_dir(void) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(g_dir, sizeof g_dir, "%s/check_viz.XXXXXX", base);
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}
static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}
static void remove_dir(void) {
  DIR *d = opendir(g_dir);
  if (!d) return;
  struct dirent *e;
  char p[600];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(g_dir);
}
static const char *path_in_dir(const char *name) {
  static char p[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
  return p[k];
}

/* ---- PNG decoding --------------------------------------------------------- */

typedef struct image {
  int w, h;
  uint8_t *rgb; /* [h, w, 3] */
  int ntext;
  char **keys, **values;
} image;

static void image_free(image *im) {
  free(im->rgb);
  for (int i = 0; i < im->ntext; i++) {
    free(im->keys[i]);
    free(im->values[i]);
  }
  free(im->keys);
  free(im->values);
  memset(im, 0, sizeof *im);
}

static void read_png(const char *path, image *im) {
  memset(im, 0, sizeof *im);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  ck_assert(png && info);
  if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng could not decode %s", path);
  png_init_io(png, f);
  png_read_info(png, info);
  im->w = (int)png_get_image_width(png, info);
  im->h = (int)png_get_image_height(png, info);
  ck_assert_int_eq(png_get_bit_depth(png, info), 8);
  ck_assert_int_eq(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
  png_textp text;
  int nt = 0;
  png_get_text(png, info, &text, &nt);
  im->ntext = nt;
  im->keys = calloc((size_t)nt + 1, sizeof(char *));
  im->values = calloc((size_t)nt + 1, sizeof(char *));
  for (int i = 0; i < nt; i++) {
    im->keys[i] = strdup(text[i].key);
    im->values[i] = strdup(text[i].text ? text[i].text : "");
  }
  im->rgb = malloc((size_t)im->w * im->h * 3);
  for (int y = 0; y < im->h; y++) png_read_row(png, im->rgb + (size_t)y * im->w * 3, NULL);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
}

static const char *image_text(const image *im, const char *key) {
  for (int i = 0; i < im->ntext; i++)
    if (!strcmp(im->keys[i], key)) return im->values[i];
  return NULL;
}

static const uint8_t *pixel(const image *im, int x, int y) {
  ck_assert_msg(x >= 0 && y >= 0 && x < im->w && y < im->h, "pixel (%d, %d) outside %dx%d", x, y,
                im->w, im->h);
  return im->rgb + ((size_t)y * im->w + x) * 3;
}

static void assert_rgb_near(const uint8_t *got, const uint8_t want[3], int tol, const char *what,
                            int x, int y) {
  for (int c = 0; c < 3; c++)
    ck_assert_msg(abs((int)got[c] - (int)want[c]) <= tol,
                  "%s at pixel (%d, %d): got (%d,%d,%d), want (%d,%d,%d) %s", what, x, y,
                  got[0], got[1], got[2], want[0], want[1], want[2], g_seedstr);
}

/* ---- mask records ---------------------------------------------------------- */

/* Random sizes summing to S over n blocks, some of them 0 when zeros. */
static void random_sizes(int32_t *sz, int64_t n, int64_t S, int zeros) {
  double *w = malloc(sizeof(double) * (size_t)n), sum = 0;
  for (int64_t i = 0; i < n; i++) {
    w[i] = (zeros && urand() < 0.15) ? 0 : 0.3 + urand();
    sum += w[i];
  }
  if (sum == 0) {
    w[0] = 1;
    sum = 1;
  }
  int64_t left = S;
  double acc = 0;
  int64_t prev = 0;
  for (int64_t i = 0; i < n; i++) {
    acc += w[i];
    int64_t edge = i == n - 1 ? S : (int64_t)floor(acc / sum * (double)S);
    if (w[i] == 0) edge = prev;
    sz[i] = (int32_t)(edge - prev);
    left -= sz[i];
    prev = edge;
  }
  ck_assert_int_eq(left, 0);
  free(w);
}

static void random_perm(int32_t *p, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = irand(0, i);
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

static bsa_mask_record *new_mask(int32_t H, int64_t Sq, int64_t Sk, int64_t MB, int64_t NB,
                                 int zeros, int scores, int perms, double keep) {
  bsa_mask_record *r = calloc(1, sizeof *r);
  r->name = strdup("layer07");
  r->num_kv_heads = H;
  r->qo_len = Sq;
  r->kv_len = Sk;
  r->num_block_rows = MB;
  r->num_block_cols = NB;
  r->block_mask_map = malloc((size_t)(H * MB * NB));
  r->block_row_sz = malloc(sizeof(int32_t) * (size_t)(H * MB));
  r->block_col_sz = malloc(sizeof(int32_t) * (size_t)(H * NB));
  r->density = NAN;
  r->recall = NAN;
  for (int32_t h = 0; h < H; h++) {
    random_sizes(r->block_row_sz + h * MB, MB, Sq, zeros);
    random_sizes(r->block_col_sz + h * NB, NB, Sk, zeros);
  }
  for (int64_t i = 0; i < H * MB * NB; i++) r->block_mask_map[i] = urand() < keep;
  if (scores) {
    r->block_scores = malloc(sizeof(float) * (size_t)(H * MB * NB));
    for (int64_t i = 0; i < H * MB * NB; i++) r->block_scores[i] = (float)urand();
  }
  if (perms) {
    r->q_perm = malloc(sizeof(int32_t) * (size_t)(H * Sq));
    r->k_perm = malloc(sizeof(int32_t) * (size_t)(H * Sk));
    for (int32_t h = 0; h < H; h++) {
      random_perm(r->q_perm + h * Sq, Sq);
      random_perm(r->k_perm + h * Sk, Sk);
    }
  }
  return r;
}

static void free_mask(bsa_mask_record *r) {
  free(r->name);
  free(r->block_mask_map);
  free(r->block_row_sz);
  free(r->block_col_sz);
  free(r->block_scores);
  free(r->q_perm);
  free(r->k_perm);
  free(r);
}

static int64_t block_start(const int32_t *sz, int64_t b) {
  int64_t s = 0;
  for (int64_t i = 0; i < b; i++) s += sz[i];
  return s;
}

/* ---- colour map ------------------------------------------------------------ */

static double luminance(const uint8_t c[3]) {
  double l[3];
  for (int i = 0; i < 3; i++) {
    double v = c[i] / 255.0;
    l[i] = v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
  }
  return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
}

START_TEST(test_colormap) {
  fresh_seed();
  static const uint8_t anchors[5][3] = {{0x44, 0x01, 0x54}, {0x3b, 0x52, 0x8b},
                                        {0x21, 0x90, 0x8c}, {0x5d, 0xc8, 0x63},
                                        {0xfd, 0xe7, 0x25}};
  for (int i = 0; i < 5; i++) {
    uint8_t c[3];
    bsa_viz_colormap(i / 4.0, c);
    assert_rgb_near(c, anchors[i], 2, "colour map anchor", i, 0);
  }
  /* Lightness rises: sample random increasing pairs. */
  for (int k = 0; k < 200; k++) {
    double a = urand(), b = urand();
    if (fabs(a - b) < 0.01) continue;
    if (a > b) {
      double t = a;
      a = b;
      b = t;
    }
    uint8_t ca[3], cb[3];
    bsa_viz_colormap(a, ca);
    bsa_viz_colormap(b, cb);
    ck_assert_msg(luminance(cb) > luminance(ca), "luminance not rising between t=%g and %g %s",
                  a, b, g_seedstr);
  }
  /* Out of range and NaN clamp. */
  uint8_t lo[3], hi[3], c[3];
  bsa_viz_colormap(0, lo);
  bsa_viz_colormap(1, hi);
  bsa_viz_colormap(-3, c);
  assert_rgb_near(c, lo, 0, "clamped below", 0, 0);
  bsa_viz_colormap(NAN, c);
  assert_rgb_near(c, lo, 0, "NaN", 0, 0);
  bsa_viz_colormap(7, c);
  assert_rgb_near(c, hi, 0, "clamped above", 0, 0);
  /* Dropped blocks are darker than the darkest score colour. */
  ck_assert(luminance(bsa_viz_dropped_rgb) < luminance(lo));
}
END_TEST

/* ---- mask figures: block colours at known tokens ----------------------------- */

/* Checks the centre pixel of every block of every panel that covers at
 * least 5 x 5 pixels. */
static int check_block_colours(const bsa_mask_record *r, const bsa_viz_layout *lay,
                               const image *im) {
  const int64_t MB = r->num_block_rows, NB = r->num_block_cols;
  int checked = 0;
  for (int32_t pi = 0; pi < lay->num_panels; pi++) {
    const bsa_viz_panel *p = &lay->panels[pi];
    int32_t h = p->head;
    for (int64_t bi = 0; bi < MB; bi++) {
      int32_t rs = r->block_row_sz[h * MB + bi];
      if (rs * (double)p->h / p->rows < 5) continue;
      double q = block_start(r->block_row_sz + h * MB, bi) + rs / 2.0;
      for (int64_t bj = 0; bj < NB; bj++) {
        int32_t cs = r->block_col_sz[h * NB + bj];
        if (cs * (double)p->w / p->cols < 5) continue;
        double k = block_start(r->block_col_sz + h * NB, bj) + cs / 2.0;
        double px, py;
        bsa_viz_panel_point(p, q, k, &px, &py);
        uint8_t want[3];
        size_t b = ((size_t)h * MB + bi) * NB + bj;
        if (!r->block_mask_map[b])
          memcpy(want, bsa_viz_dropped_rgb, 3);
        else if (!r->block_scores)
          memcpy(want, bsa_viz_kept_rgb, 3);
        else
          bsa_viz_score_rgb(lay, r->block_scores[b], want);
        assert_rgb_near(pixel(im, (int)px, (int)py), want, 1,
                        r->block_mask_map[b] ? "kept block" : "dropped block", (int)px, (int)py);
        checked++;
      }
    }
  }
  return checked;
}

START_TEST(test_masks_blocks) {
  fresh_seed();
  make_dir();
  for (int variant = 0; variant < 4; variant++) {
    /* 0: scores on a linear scale, 1: log scale, 2: no scores, 3: heads subset */
    int32_t H = (int32_t)irand(1, 5);
    int64_t Sq = irand(40, 3000), Sk = irand(Sq / 3 + 1, 3 * Sq);
    int64_t MB = irand(1, 10), NB = irand(1, 10);
    bsa_mask_record *r = new_mask(H, Sq, Sk, MB, NB, 1, variant != 2, urand() < 0.5, 0.5);
    if (variant == 0)
      for (int64_t i = 0; i < H * MB * NB; i++) r->block_scores[i] = (float)(0.2 + 0.8 * urand());
    if (variant == 1)
      for (int64_t i = 0; i < H * MB * NB; i++) r->block_scores[i] = (float)pow(10, -5 * urand());
    bsa_viz_masks_opts o;
    memset(&o, 0, sizeof o);
    o.panel_px = (int32_t)irand(200, 360);
    int32_t heads[5];
    if (variant == 3) {
      o.num_heads = (int32_t)irand(1, H);
      int32_t all[5];
      random_perm(all, H);
      memcpy(heads, all, sizeof(int32_t) * (size_t)o.num_heads);
      o.heads = heads;
    }
    const char *out = path_in_dir("masks.png");
    ck_assert_msg(bsa_viz_masks(r, &o, out) == BSA_OK, "%s %s", bsa_last_error(), g_seedstr);
    bsa_viz_layout lay;
    ck_assert_int_eq(bsa_viz_masks_layout(r, &o, &lay), BSA_OK);
    image im;
    read_png(out, &im);
    ck_assert_int_eq(im.w, lay.width);
    ck_assert_int_eq(im.h, lay.height);
    ck_assert_int_eq(lay.num_panels, variant == 3 ? o.num_heads : H);
    for (int32_t i = 0; i < lay.num_panels; i++) {
      ck_assert_int_eq(lay.panels[i].head, variant == 3 ? heads[i] : i);
      ck_assert_int_le(lay.panels[i].x + lay.panels[i].w, lay.width);
      ck_assert_int_le(lay.panels[i].y + lay.panels[i].h, lay.height);
      /* Panels keep the Sq : Sk aspect and the requested longer side. */
      ck_assert_int_eq(lay.panels[i].w > lay.panels[i].h ? lay.panels[i].w : lay.panels[i].h,
                       o.panel_px);
    }
    /* The colour scale spans the kept, non-empty blocks of the shown heads. */
    ck_assert_int_eq(lay.has_scores, variant != 2);
    if (variant != 2) {
      double lo = INFINITY, hi = -INFINITY;
      for (int32_t i = 0; i < lay.num_panels; i++) {
        int32_t h = lay.panels[i].head;
        for (int64_t bi = 0; bi < MB; bi++)
          for (int64_t bj = 0; bj < NB; bj++) {
            size_t b = ((size_t)h * MB + bi) * NB + bj;
            if (!r->block_mask_map[b] || !r->block_row_sz[h * MB + bi] ||
                !r->block_col_sz[h * NB + bj])
              continue;
            lo = fmin(lo, r->block_scores[b]);
            hi = fmax(hi, r->block_scores[b]);
          }
      }
      if (hi >= lo) {
        ck_assert_msg(fabs(lay.score_hi - hi) <= 1e-6 * hi, "score_hi %g, want %g %s",
                      lay.score_hi, hi, g_seedstr);
        ck_assert_int_eq(lay.score_log, lo > 0 && hi / lo >= 10);
        if (!lay.score_log) ck_assert(fabs(lay.score_lo - lo) <= 1e-6 * fabs(lo) + 1e-12);
      }
    }
    int checked = check_block_colours(r, &lay, &im);
    ck_assert_msg(checked > 0 || MB * NB == 0, "no block was large enough to check %s", g_seedstr);
    image_free(&im);
    bsa_viz_layout_free(&lay);
    free_mask(r);
  }
  remove_dir();
}
END_TEST

/* Token order: cell (i, j) is kept iff the block of the permuted positions
 * of tokens i and j is kept; positions found here by search. */
START_TEST(test_masks_original_order) {
  fresh_seed();
  make_dir();
  int32_t H = (int32_t)irand(1, 3);
  int64_t Sq = irand(6, 14), Sk = irand(6, 14);
  int64_t MB = irand(2, 4), NB = irand(2, 4);
  bsa_mask_record *r = new_mask(H, Sq, Sk, MB, NB, 0, 0, 1, 0.5);
  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  o.order = BSA_VIZ_ORDER_ORIGINAL;
  o.panel_px = 280;
  const char *out = path_in_dir("orig.png");
  ck_assert_msg(bsa_viz_masks(r, &o, out) == BSA_OK, "%s", bsa_last_error());
  bsa_viz_layout lay;
  ck_assert_int_eq(bsa_viz_masks_layout(r, &o, &lay), BSA_OK);
  image im;
  read_png(out, &im);
  ck_assert_int_eq(im.w, lay.width);
  for (int32_t h = 0; h < H; h++) {
    const bsa_viz_panel *p = &lay.panels[h];
    for (int64_t i = 0; i < Sq; i++) {
      int64_t pi = -1;
      for (int64_t t = 0; t < Sq; t++)
        if (r->q_perm[h * Sq + t] == i) pi = t;
      int64_t bi = 0, acc = r->block_row_sz[h * MB];
      while (pi >= acc) acc += r->block_row_sz[h * MB + ++bi];
      for (int64_t j = 0; j < Sk; j++) {
        int64_t pj = -1;
        for (int64_t t = 0; t < Sk; t++)
          if (r->k_perm[h * Sk + t] == j) pj = t;
        int64_t bj = 0, acc2 = r->block_col_sz[h * NB];
        while (pj >= acc2) acc2 += r->block_col_sz[h * NB + ++bj];
        int kept = r->block_mask_map[(h * MB + bi) * NB + bj];
        double px, py;
        bsa_viz_panel_point(p, i + 0.5, j + 0.5, &px, &py);
        assert_rgb_near(pixel(&im, (int)px, (int)py), kept ? bsa_viz_kept_rgb : bsa_viz_dropped_rgb,
                        1, kept ? "kept token pair" : "dropped token pair", (int)px, (int)py);
      }
    }
  }
  image_free(&im);
  /* The stored order draws the blocks themselves. */
  o.order = BSA_VIZ_ORDER_PERMUTED;
  ck_assert_int_eq(bsa_viz_masks(r, &o, out), BSA_OK);
  read_png(out, &im);
  ck_assert_int_gt(check_block_colours(r, &lay, &im), 0);
  image_free(&im);
  bsa_viz_layout_free(&lay);
  free_mask(r);
  remove_dir();
}
END_TEST

/* Token coverage of pixel p (of n over S tokens) by each block, computed
 * from block extents. */
static void coverage(const int32_t *sz, int64_t nb, int64_t S, int n, int p, double *w) {
  double lo = (double)p * S / n, hi = (double)(p + 1) * S / n;
  int64_t s = 0;
  for (int64_t b = 0; b < nb; b++) {
    double ov = fmin(hi, (double)(s + sz[b])) - fmax(lo, (double)s);
    w[b] = ov > 0 ? ov : 0;
    s += sz[b];
  }
}

START_TEST(test_masks_area_average_75k) {
  fresh_seed();
  make_dir();
  const int64_t S = 75600, MB = irand(950, 1050), NB = irand(950, 1050);
  bsa_mask_record *r = new_mask(2, S, S, MB, NB, 0, 0, 1, urand() * 0.6 + 0.1);
  /* The expected mean colour: kept and dropped areas. */
  double kept_area[2] = {0, 0};
  for (int h = 0; h < 2; h++)
    for (int64_t bi = 0; bi < MB; bi++)
      for (int64_t bj = 0; bj < NB; bj++)
        if (r->block_mask_map[(h * MB + bi) * NB + bj])
          kept_area[h] += (double)r->block_row_sz[h * MB + bi] * r->block_col_sz[h * NB + bj];
  for (int order = 0; order < 2; order++) {
    bsa_viz_masks_opts o;
    memset(&o, 0, sizeof o);
    o.order = order ? BSA_VIZ_ORDER_ORIGINAL : BSA_VIZ_ORDER_PERMUTED;
    o.panel_px = (int32_t)irand(200, 400);
    const char *out = path_in_dir("big.png");
    ck_assert_msg(bsa_viz_masks(r, &o, out) == BSA_OK, "%s", bsa_last_error());
    bsa_viz_layout lay;
    ck_assert_int_eq(bsa_viz_masks_layout(r, &o, &lay), BSA_OK);
    image im;
    read_png(out, &im);
    for (int h = 0; h < 2; h++) {
      const bsa_viz_panel *p = &lay.panels[h];
      double f = kept_area[h] / ((double)S * S);
      double sum[3] = {0, 0, 0};
      for (int y = 0; y < p->h; y++)
        for (int x = 0; x < p->w; x++)
          for (int c = 0; c < 3; c++) sum[c] += pixel(&im, p->x + x, p->y + y)[c];
      for (int c = 0; c < 3; c++) {
        double mean = sum[c] / ((double)p->w * p->h);
        double want = f * bsa_viz_kept_rgb[c] + (1 - f) * bsa_viz_dropped_rgb[c];
        ck_assert_msg(fabs(mean - want) < 0.5,
                      "head %d order %d channel %d: mean %.3f, want %.3f %s", h, order, c,
                      mean, want, g_seedstr);
      }
      if (order == 0) {
        /* Single pixels: coverage-weighted mix of the blocks under them. */
        double *wr = malloc(sizeof(double) * (size_t)MB), *wc = malloc(sizeof(double) * (size_t)NB);
        for (int k = 0; k < 20; k++) {
          int x = (int)irand(0, p->w - 1), y = (int)irand(0, p->h - 1);
          coverage(r->block_row_sz + h * MB, MB, S, p->h, y, wr);
          coverage(r->block_col_sz + h * NB, NB, S, p->w, x, wc);
          double acc[3] = {0, 0, 0}, tw = 0;
          for (int64_t bi = 0; bi < MB; bi++) {
            if (wr[bi] == 0) continue;
            for (int64_t bj = 0; bj < NB; bj++) {
              if (wc[bj] == 0) continue;
              double w = wr[bi] * wc[bj];
              const uint8_t *c = r->block_mask_map[(h * MB + bi) * NB + bj] ? bsa_viz_kept_rgb
                                                                             : bsa_viz_dropped_rgb;
              for (int d = 0; d < 3; d++) acc[d] += w * c[d];
              tw += w;
            }
          }
          uint8_t want[3];
          for (int d = 0; d < 3; d++) want[d] = (uint8_t)lround(acc[d] / tw);
          assert_rgb_near(pixel(&im, p->x + x, p->y + y), want, 1, "area-averaged pixel", x, y);
        }
        free(wr);
        free(wc);
      }
    }
    image_free(&im);
    bsa_viz_layout_free(&lay);
  }
  free_mask(r);
  remove_dir();
}
END_TEST

/* Upsampling: pixels straddling token edges of a tiny mask mix exactly. */
START_TEST(test_masks_fractional_pixels) {
  fresh_seed();
  make_dir();
  int64_t S = irand(5, 9);
  bsa_mask_record *r = new_mask(1, S, S, S, S, 0, 0, 0, 0.5);
  for (int64_t i = 0; i < S; i++) r->block_row_sz[i] = r->block_col_sz[i] = 1;
  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  o.panel_px = (int32_t)irand(17, 61); /* not a multiple of S in general */
  const char *out = path_in_dir("tiny.png");
  ck_assert_int_eq(bsa_viz_masks(r, &o, out), BSA_OK);
  bsa_viz_layout lay;
  ck_assert_int_eq(bsa_viz_masks_layout(r, &o, &lay), BSA_OK);
  image im;
  read_png(out, &im);
  const bsa_viz_panel *p = &lay.panels[0];
  double wr[16], wc[16];
  for (int y = 0; y < p->h; y++)
    for (int x = 0; x < p->w; x++) {
      coverage(r->block_row_sz, S, S, p->h, y, wr);
      coverage(r->block_col_sz, S, S, p->w, x, wc);
      double acc[3] = {0, 0, 0}, tw = 0;
      for (int64_t i = 0; i < S; i++)
        for (int64_t j = 0; j < S; j++) {
          double w = wr[i] * wc[j];
          const uint8_t *c = r->block_mask_map[i * S + j] ? bsa_viz_kept_rgb : bsa_viz_dropped_rgb;
          for (int d = 0; d < 3; d++) acc[d] += w * c[d];
          tw += w;
        }
      uint8_t want[3];
      for (int d = 0; d < 3; d++) want[d] = (uint8_t)lround(acc[d] / tw);
      assert_rgb_near(pixel(&im, p->x + x, p->y + y), want, 1, "straddling pixel", x, y);
    }
  image_free(&im);
  bsa_viz_layout_free(&lay);
  free_mask(r);
  remove_dir();
}
END_TEST

/* ---- text chunks ------------------------------------------------------------- */

START_TEST(test_png_text) {
  fresh_seed();
  make_dir();
  bsa_mask_record *r = new_mask(2, 64, 64, 4, 4, 0, 1, 0, 0.5);
  char run_id[32], cmd[128];
  snprintf(run_id, sizeof run_id, "%lld", (long long)irand(1, 1000000));
  snprintf(cmd, sizeof cmd, "bsa viz masks --masks 'm %llu.h5' --out x.png",
           (unsigned long long)rnd_u64());
  const char *unicode = "inputs: caf\xc3\xa9/\xe6\xb3\xa8\xe6\x84\x8f.h5";
  bsa_viz_text meta[] = {{"bsa-command", cmd}, {"bsa-run-id", run_id}, {"bsa-input-masks", unicode}};
  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  o.method = "kmeans";
  o.meta = meta;
  o.num_meta = 3;
  const char *out = path_in_dir("text.png");
  ck_assert_int_eq(bsa_viz_masks(r, &o, out), BSA_OK);
  image im;
  read_png(out, &im);
  char sw[64];
  snprintf(sw, sizeof sw, "bsa %s", bsa_version());
  ck_assert_ptr_nonnull(image_text(&im, "Software"));
  ck_assert_str_eq(image_text(&im, "Software"), sw);
  ck_assert_ptr_nonnull(image_text(&im, "Title"));
  ck_assert_msg(strstr(image_text(&im, "Title"), "layer07") && strstr(image_text(&im, "Title"), "kmeans"),
                "title '%s' names neither record nor method", image_text(&im, "Title"));
  ck_assert_ptr_nonnull(image_text(&im, "bsa-command"));
  ck_assert_str_eq(image_text(&im, "bsa-command"), cmd);
  ck_assert_str_eq(image_text(&im, "bsa-run-id"), run_id);
  ck_assert_ptr_nonnull(image_text(&im, "bsa-input-masks"));
  ck_assert_str_eq(image_text(&im, "bsa-input-masks"), unicode);
  image_free(&im);
  /* A key the PNG format does not allow is refused, and nothing is written. */
  bsa_viz_text bad[] = {{"two  spaces", "x"}};
  o.meta = bad;
  o.num_meta = 1;
  const char *out2 = path_in_dir("bad.png");
  ck_assert_int_eq(bsa_viz_masks(r, &o, out2), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "two  spaces") != NULL, "%s", bsa_last_error());
  ck_assert_int_ne(access(out2, F_OK), 0);
  free_mask(r);
  remove_dir();
}
END_TEST

/* ---- errors --------------------------------------------------------------------- */

START_TEST(test_masks_errors) {
  fresh_seed();
  make_dir();
  bsa_mask_record *r = new_mask(3, irand(30, 90), irand(30, 90), 3, 3, 0, 1, 1, 0.5);
  /* Unwritable: a missing folder. */
  const char *missing = path_in_dir("no-such-folder/m.png");
  ck_assert_int_eq(bsa_viz_masks(r, NULL, missing), BSA_ERR_IO);
  ck_assert_msg(strstr(bsa_last_error(), missing) != NULL, "message '%s' does not name '%s'",
                bsa_last_error(), missing);
  ck_assert_int_eq(count_files(g_dir), 0);
  /* A folder in place of the file. */
  ck_assert_int_eq(bsa_viz_masks(r, NULL, g_dir), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "folder") != NULL, "%s", bsa_last_error());

  /* An existing file survives every failure unchanged. */
  const char *keep = path_in_dir("keep.png");
  FILE *f = fopen(keep, "wb");
  char content[64];
  snprintf(content, sizeof content, "precious %llu", (unsigned long long)rnd_u64());
  fputs(content, f);
  fclose(f);
  bsa_viz_masks_opts o;
  memset(&o, 0, sizeof o);
  int32_t bad_head = (int32_t)irand(3, 100);
  o.heads = &bad_head;
  o.num_heads = 1;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "heads") != NULL, "%s", bsa_last_error());
  int32_t twice[2] = {1, 1};
  o.heads = twice;
  o.num_heads = 2;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "twice") != NULL, "%s", bsa_last_error());
  memset(&o, 0, sizeof o);
  int64_t h = irand(0, 2);
  r->block_row_sz[h * 3] += 1;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "block_row_sz") && strstr(bsa_last_error(), "qo_len"),
                "%s", bsa_last_error());
  r->block_row_sz[h * 3] -= 1;
  r->block_col_sz[h * 3 + 1] = -r->block_col_sz[h * 3 + 1] - 1;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "block_col_sz") && strstr(bsa_last_error(), "negative"),
                "%s", bsa_last_error());
  r->block_col_sz[h * 3 + 1] = -r->block_col_sz[h * 3 + 1] - 1;
  /* A permutation with a repeated token (only token order uses it). */
  int64_t a = irand(0, r->qo_len - 1), b = (a + 1) % r->qo_len;
  int32_t saved = r->q_perm[h * r->qo_len + b];
  r->q_perm[h * r->qo_len + b] = r->q_perm[h * r->qo_len + a];
  o.order = BSA_VIZ_ORDER_ORIGINAL;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "q_perm") && strstr(bsa_last_error(), "not a permutation"),
                "%s", bsa_last_error());
  r->q_perm[h * r->qo_len + b] = saved;
  o.panel_px = 5;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "panel_px"), "%s", bsa_last_error());
  char got[64] = "";
  f = fopen(keep, "rb");
  ck_assert_ptr_nonnull(fgets(got, sizeof got, f));
  fclose(f);
  ck_assert_str_eq(got, content);
  ck_assert_int_eq(count_files(g_dir), 1);
  /* And a good render replaces it. */
  o.panel_px = 0;
  ck_assert_int_eq(bsa_viz_masks(r, &o, keep), BSA_OK);
  image im;
  read_png(keep, &im);
  image_free(&im);
  ck_assert_int_eq(count_files(g_dir), 1);
  free_mask(r);
  remove_dir();
}
END_TEST

/* ---- attention mass and recall ------------------------------------------------ */

static bsa_trace_record *new_trace(int32_t hq, int32_t hkv, int32_t D, int64_t sq, int64_t sk,
                                   int causal) {
  bsa_trace_record *r = calloc(1, sizeof *r);
  r->name = strdup("layer03");
  r->num_qo_heads = hq;
  r->num_kv_heads = hkv;
  r->head_dim = D;
  r->qo_len = sq;
  r->kv_len = sk;
  r->causal = causal;
  r->step = -1;
  r->sm_scale = urand() < 0.5 ? 0 : (float)(0.5 + urand());
  r->q = malloc(sizeof(float) * (size_t)(hq * sq * D));
  r->k = malloc(sizeof(float) * (size_t)(hkv * sk * D));
  double amp = 0.5 + 1.5 * urand();
  for (int64_t x = 0; x < hq * sq * D; x++) r->q[x] = (float)(amp * nrand());
  for (int64_t x = 0; x < hkv * sk * D; x++) r->k[x] = (float)(amp * nrand());
  return r;
}

static void free_trace(bsa_trace_record *r) {
  free(r->name);
  free(r->q);
  free(r->k);
  free(r);
}

/* P [Sq, Sk] of query head qh in double; rows with no visible key are 0. */
static void naive_probs(const bsa_trace_record *r, int32_t qh, double *P) {
  int64_t Sq = r->qo_len, Sk = r->kv_len, D = r->head_dim;
  int32_t G = r->num_qo_heads / r->num_kv_heads;
  double scale = r->sm_scale > 0 ? r->sm_scale : 1 / sqrt((double)D);
  const float *q = r->q + (size_t)qh * Sq * D, *k = r->k + (size_t)(qh / G) * Sk * D;
  for (int64_t i = 0; i < Sq; i++) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < Sk; j++) {
      int vis = !r->causal || j <= i + (Sk - Sq);
      double s = 0;
      for (int64_t d = 0; d < D; d++) s += (double)q[i * D + d] * k[j * D + d];
      P[i * Sk + j] = vis ? s * scale : -INFINITY;
      if (vis) mx = fmax(mx, P[i * Sk + j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < Sk; j++) {
      P[i * Sk + j] = isinf(mx) ? 0 : exp(P[i * Sk + j] - mx);
      sum += P[i * Sk + j];
    }
    for (int64_t j = 0; j < Sk; j++) P[i * Sk + j] = sum > 0 ? P[i * Sk + j] / sum : 0;
  }
}

START_TEST(test_block_mass) {
  fresh_seed();
  static const int32_t groups[][2] = {{1, 1}, {4, 1}, {4, 2}, {6, 3}};
  for (int rep = 0; rep < 6; rep++) {
    const int32_t *g = groups[irand(0, 3)];
    int64_t Sq = irand(1, 150), Sk = irand(1, 150);
    int causal = urand() < 0.5;
    bsa_trace_record *r = new_trace(g[0], g[1], (int32_t)irand(1, 40), Sq, Sk, causal);
    int64_t B = irand(1, Sq > Sk ? (Sq < 40 ? Sq : 40) : (Sk < 40 ? Sk : 40));
    int32_t kh = (int32_t)irand(0, g[1] - 1);
    int64_t MB = (Sq + B - 1) / B, NB = (Sk + B - 1) / B;
    float *mass = malloc(sizeof(float) * (size_t)(MB * NB));
    for (int64_t i = 0; i < MB * NB; i++) mass[i] = NAN; /* poison */
    ck_assert_msg(bsa_viz_block_mass(r, kh, B, mass) == BSA_OK, "%s", bsa_last_error());
    double *want = calloc((size_t)(MB * NB), sizeof(double));
    double *P = malloc(sizeof(double) * (size_t)(Sq * Sk));
    int32_t G = g[0] / g[1];
    for (int32_t gg = 0; gg < G; gg++) {
      naive_probs(r, kh * G + gg, P);
      for (int64_t i = 0; i < Sq; i++)
        for (int64_t j = 0; j < Sk; j++) want[(i / B) * NB + j / B] += P[i * Sk + j];
    }
    double num = 0, den = 0;
    for (int64_t bi = 0; bi < MB; bi++) {
      int64_t rows = (bi + 1) * B > Sq ? Sq - bi * B : B;
      double rowsum = 0;
      for (int64_t bj = 0; bj < NB; bj++) {
        double w = want[bi * NB + bj] / ((double)rows * G);
        ck_assert_msg(isfinite(mass[bi * NB + bj]), "mass[%lld] not written", (long long)(bi * NB + bj));
        num += (mass[bi * NB + bj] - w) * (mass[bi * NB + bj] - w);
        den += w * w;
        rowsum += mass[bi * NB + bj];
      }
      /* Each row block's masses sum to its share of rows that see a key. */
      int64_t seeing = 0;
      for (int64_t i = bi * B; i < bi * B + rows; i++) seeing += !causal || i + (Sk - Sq) >= 0;
      ck_assert_msg(fabs(rowsum - (double)seeing / rows) < 1e-5, "row block %lld sums to %g %s",
                    (long long)bi, rowsum, g_seedstr);
    }
    ck_assert_msg(den == 0 || sqrt(num / den) < 1e-5, "block mass rel L2 %g %s",
                  sqrt(num / fmax(den, 1e-300)), g_seedstr);
    free(P);
    free(want);
    free(mass);
    free_trace(r);
  }
  /* Errors name the argument. */
  bsa_trace_record *r = new_trace(4, 2, 8, 16, 16, 0);
  float m[4];
  ck_assert_int_eq(bsa_viz_block_mass(r, 2, 8, m), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "kv head 2"), "%s", bsa_last_error());
  ck_assert_int_eq(bsa_viz_block_mass(r, 0, 0, m), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "block"), "%s", bsa_last_error());
  r->num_qo_heads = 3;
  ck_assert_int_eq(bsa_viz_block_mass(r, 0, 8, m), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "num_qo_heads"), "%s", bsa_last_error());
  r->num_qo_heads = 4;
  free_trace(r);
}
END_TEST

START_TEST(test_mask_recall) {
  fresh_seed();
  for (int rep = 0; rep < 4; rep++) {
    int32_t hkv = (int32_t)irand(1, 3), G = (int32_t)irand(1, 3);
    int64_t S = irand(8, 120), Sk = urand() < 0.5 ? S : irand(8, 120);
    int causal = urand() < 0.5;
    bsa_trace_record *t = new_trace(hkv * G, hkv, (int32_t)irand(2, 32), S, Sk, causal);
    int64_t MB = irand(1, 6), NB = irand(1, 6);
    bsa_mask_record *m = new_mask(hkv, S, Sk, MB, NB, 1, 0, urand() < 0.7, 0.5);
    double rec[3] = {NAN, NAN, NAN};
    ck_assert_msg(bsa_viz_mask_recall(t, m, rec) == BSA_OK, "%s", bsa_last_error());
    double *P = malloc(sizeof(double) * (size_t)(S * Sk));
    for (int32_t h = 0; h < hkv; h++) {
      double kept = 0, rows = 0;
      for (int32_t g = 0; g < G; g++) {
        naive_probs(t, h * G + g, P);
        for (int64_t i = 0; i < S; i++) {
          /* permuted position of token i, then its block */
          int64_t pi = i;
          if (m->q_perm)
            for (int64_t p = 0; p < S; p++)
              if (m->q_perm[h * S + p] == i) pi = p;
          int64_t bi = 0, acc = m->block_row_sz[h * MB];
          while (pi >= acc) acc += m->block_row_sz[h * MB + ++bi];
          double rowsum = 0;
          for (int64_t j = 0; j < Sk; j++) {
            int64_t pj = j;
            if (m->k_perm)
              for (int64_t p = 0; p < Sk; p++)
                if (m->k_perm[h * Sk + p] == j) pj = p;
            int64_t bj = 0, acc2 = m->block_col_sz[h * NB];
            while (pj >= acc2) acc2 += m->block_col_sz[h * NB + ++bj];
            if (m->block_mask_map[(h * MB + bi) * NB + bj]) kept += P[i * Sk + j];
            rowsum += P[i * Sk + j];
          }
          rows += rowsum > 0.5;
        }
      }
      double want = rows > 0 ? kept / rows : NAN;
      if (rows > 0)
        ck_assert_msg(fabs(rec[h] - want) < 1e-5, "head %d recall %g, want %g %s", h, rec[h],
                      want, g_seedstr);
    }
    free(P);
    free_mask(m);
    free_trace(t);
  }
}
END_TEST

START_TEST(test_scores_figure) {
  fresh_seed();
  make_dir();
  int64_t Sq = irand(100, 400), Sk = irand(100, 400);
  bsa_trace_record *t = new_trace(4, 2, 16, Sq, Sk, urand() < 0.5);
  bsa_viz_scores_opts o;
  memset(&o, 0, sizeof o);
  o.kv_head = (int32_t)irand(0, 1);
  o.block = irand(16, 48);
  o.panel_px = (int32_t)irand(300, 500);
  bsa_viz_text meta[] = {{"bsa-record", "layer03"}};
  o.meta = meta;
  o.num_meta = 1;
  const char *out = path_in_dir("scores.png");
  bsa_viz_layout lay;
  ck_assert_msg(bsa_viz_scores(t, &o, out, &lay) == BSA_OK, "%s", bsa_last_error());
  image im;
  read_png(out, &im);
  ck_assert_int_eq(im.w, lay.width);
  ck_assert_int_eq(im.h, lay.height);
  ck_assert_str_eq(image_text(&im, "bsa-record"), "layer03");
  ck_assert_int_eq(lay.score_log, 1);
  int64_t B = o.block, MB = (Sq + B - 1) / B, NB = (Sk + B - 1) / B;
  /* Masses from double loops; the colour of each block's centre. */
  double *want = calloc((size_t)(MB * NB), sizeof(double));
  double *P = malloc(sizeof(double) * (size_t)(Sq * Sk));
  for (int g = 0; g < 2; g++) {
    naive_probs(t, o.kv_head * 2 + g, P);
    for (int64_t i = 0; i < Sq; i++)
      for (int64_t j = 0; j < Sk; j++) want[(i / B) * NB + j / B] += P[i * Sk + j];
  }
  double hi = 0;
  for (int64_t bi = 0; bi < MB; bi++) {
    int64_t rows = (bi + 1) * B > Sq ? Sq - bi * B : B;
    for (int64_t bj = 0; bj < NB; bj++) {
      want[bi * NB + bj] /= 2.0 * rows;
      hi = fmax(hi, want[bi * NB + bj]);
    }
  }
  ck_assert(fabs(lay.score_hi - hi) < 1e-5 * hi);
  const bsa_viz_panel *p = &lay.panels[0];
  for (int64_t bi = 0; bi < MB; bi++) {
    int64_t rows = (bi + 1) * B > Sq ? Sq - bi * B : B;
    for (int64_t bj = 0; bj < NB; bj++) {
      int64_t cols = (bj + 1) * B > Sk ? Sk - bj * B : B;
      if (rows * (double)p->h / Sq < 5 || cols * (double)p->w / Sk < 5) continue;
      double px, py;
      bsa_viz_panel_point(p, bi * B + rows / 2.0, bj * B + cols / 2.0, &px, &py);
      uint8_t c[3];
      if (want[bi * NB + bj] > 0)
        bsa_viz_score_rgb(&lay, want[bi * NB + bj], c);
      else
        memcpy(c, bsa_viz_dropped_rgb, 3);
      assert_rgb_near(pixel(&im, (int)px, (int)py), c, 2, "score block", (int)px, (int)py);
    }
  }
  free(P);
  free(want);
  image_free(&im);
  bsa_viz_layout_free(&lay);
  /* An unwritable destination fails before the computation, leaving nothing. */
  const char *missing = path_in_dir("nope/s.png");
  ck_assert_int_eq(bsa_viz_scores(t, &o, missing, NULL), BSA_ERR_IO);
  ck_assert_msg(strstr(bsa_last_error(), missing), "%s", bsa_last_error());
  o.kv_head = 2;
  ck_assert_int_eq(bsa_viz_scores(t, &o, out, NULL), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), "kv head 2"), "%s", bsa_last_error());
  free_trace(t);
  remove_dir();
}
END_TEST

/* ---- charts ---------------------------------------------------------------- */

/* Whether pixel (x, y) has the colour rgb (within 2). */
static int has_colour(const image *im, double x, double y, const uint8_t rgb[3]) {
  const uint8_t *p = pixel(im, (int)floor(x), (int)floor(y));
  for (int c = 0; c < 3; c++)
    if (abs((int)p[c] - (int)rgb[c]) > 2) return 0;
  return 1;
}

START_TEST(test_chart_points) {
  fresh_seed();
  make_dir();
  int ns = (int)irand(1, 4);
  bsa_viz_series s[4];
  double xs[4][6], ys[4][6];
  char labels[4][32];
  int log_x = urand() < 0.5, log_y = urand() < 0.5;
  for (int i = 0; i < ns; i++) {
    snprintf(labels[i], sizeof labels[i], "series %d", i);
    for (int k = 0; k < 6; k++) {
      xs[i][k] = log_x ? pow(10, 3 * urand() - 2) : 10 * urand() - 3;
      ys[i][k] = log_y ? pow(10, 2 * urand()) : 5 * urand();
    }
    s[i] = (bsa_viz_series){labels[i], 6, xs[i], ys[i], urand() < 0.5};
  }
  bsa_viz_chart c;
  memset(&c, 0, sizeof c);
  c.title = "points";
  c.x_label = "x";
  c.y_label = "y";
  c.log_x = log_x;
  c.log_y = log_y;
  c.series = s;
  c.num_series = ns;
  const char *out = path_in_dir("chart.png");
  ck_assert_msg(bsa_viz_chart_render(&c, out) == BSA_OK, "%s", bsa_last_error());
  bsa_viz_chart_geom g;
  ck_assert_int_eq(bsa_viz_chart_layout(&c, &g), BSA_OK);
  image im;
  read_png(out, &im);
  ck_assert_int_eq(im.w, g.width);
  ck_assert_int_eq(im.h, g.height);
  /* The last series' markers are drawn on top: their centres show it,
   * except where a later marker of the same series lies over the centre
   * (radius 4.5, white outline to 5, plus the pixel's rounding and the
   * outline's antialiasing: 7); the last point is always checked. */
  uint8_t rgb[3];
  bsa_viz_series_rgb(ns - 1, rgb);
  double px[6], py[6];
  for (int k = 0; k < 6; k++) {
    bsa_viz_chart_point(&g, xs[ns - 1][k], ys[ns - 1][k], &px[k], &py[k]);
    ck_assert(px[k] >= g.x && px[k] <= g.x + g.w && py[k] >= g.y && py[k] <= g.y + g.h);
  }
  for (int k = 0; k < 6; k++) {
    int covered = 0;
    for (int j = k + 1; j < 6; j++)
      if (hypot(px[j] - px[k], py[j] - py[k]) < 7.0) covered = 1;
    if (covered) continue;
    ck_assert_msg(has_colour(&im, px[k], py[k], rgb), "no marker of series %d at (%g, %g) %s",
                  ns - 1, px[k], py[k], g_seedstr);
  }
  image_free(&im);
  /* A non-positive value on a log axis is refused. */
  if (log_x) {
    xs[0][0] = -1;
    ck_assert_int_eq(bsa_viz_chart_render(&c, out), BSA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(bsa_last_error(), "series 0"), "%s", bsa_last_error());
  }
  remove_dir();
}
END_TEST

static void metric_pair(bsa_run *run, const char *yname, double y, double d, const char *record,
                        int head, const char *labels) {
  ck_assert_int_eq(bsa_run_metric(run, "density", d, record, head, labels), BSA_OK);
  ck_assert_int_eq(bsa_run_metric(run, yname, y, record, head, labels), BSA_OK);
}

START_TEST(test_speedup_chart) {
  fresh_seed();
  make_dir();
  const char *db = path_in_dir("runs.db");
  bsa_runlog *log;
  ck_assert_int_eq(bsa_runlog_open(db, &log), BSA_OK);
  char *argv[] = {"bsa", "bench", NULL};
  /* Two ok runs (bsr and var), the dense baseline, and a failed run.  The
   * densities of a series are random within bands a factor of 1.28 or more
   * apart (30 pixels or more on this axis), so that no marker covers
   * another's centre. */
  double d_bsr[3], s_bsr[3], d_var[3], s_var[3];
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  metric_pair(run, "speedup", 1.0, 1.0, NULL, -1, "{\"device\":\"cpu\",\"layout\":\"dense\",\"seq\":1024}");
  for (int i = 0; i < 3; i++) {
    d_bsr[i] = 0.02 * pow(2.5, i) * (1 + 0.5 * urand());
    s_bsr[i] = 1 / d_bsr[i] * (0.3 + 0.5 * urand());
    char lab[256];
    snprintf(lab, sizeof lab,
             "{\"device\":\"cpu\",\"layout\":\"bsr\",\"seq\":1024,\"block\":64,\"density_target\":%g}",
             d_bsr[i]);
    metric_pair(run, "speedup", s_bsr[i], d_bsr[i], NULL, -1, lab);
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  for (int i = 0; i < 3; i++) {
    d_var[i] = 0.25 * pow(1.6, i) * (1 + 0.25 * urand());
    s_var[i] = 1 / d_var[i] * (0.3 + 0.5 * urand());
    char lab[256];
    snprintf(lab, sizeof lab, "{\"device\":\"cpu\",\"layout\":\"var\",\"seq\":1024,\"blocks\":\"16x16\"}");
    metric_pair(run, "speedup", s_var[i], d_var[i], NULL, -1, lab);
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  ck_assert_int_eq(bsa_runlog_run_begin(log, "bench", 2, argv, &run), BSA_OK);
  double d_fail = 0.004, s_fail = 1.5;
  metric_pair(run, "speedup", s_fail, d_fail, NULL, -1,
              "{\"device\":\"cpu\",\"layout\":\"bsr\",\"seq\":1024,\"block\":64}");
  ck_assert_int_eq(bsa_run_end(run, BSA_ERR_INTERNAL, "interrupted on purpose"), BSA_OK);

  const char *out = path_in_dir("speedup.png");
  bsa_viz_chart_geom g;
  ck_assert_msg(bsa_viz_speedup(log, db, NULL, out, &g) == BSA_OK, "%s", bsa_last_error());
  image im;
  read_png(out, &im);
  ck_assert_int_eq(im.w, g.width);
  ck_assert_int_eq(g.log_x, 1);
  ck_assert_int_eq(g.log_y, 1);
  /* Series sorted by name: "cpu · bsr · block 64" before "cpu · var ...". */
  uint8_t c0[3], c1[3];
  bsa_viz_series_rgb(0, c0);
  bsa_viz_series_rgb(1, c1);
  for (int i = 0; i < 3; i++) {
    double px, py;
    bsa_viz_chart_point(&g, d_bsr[i], s_bsr[i], &px, &py);
    ck_assert_msg(has_colour(&im, px, py, c0), "bsr point %d missing %s", i, g_seedstr);
    bsa_viz_chart_point(&g, d_var[i], s_var[i], &px, &py);
    ck_assert_msg(has_colour(&im, px, py, c1), "var point %d missing %s", i, g_seedstr);
  }
  /* The failed run's point (density below all others) and the dense
   * baseline (density 1) are left out: the axis does not reach them. */
  ck_assert_msg(g.x_lo > d_fail, "the failed run widened the axis to %g", g.x_lo);
  double px, py;
  ck_assert_msg(g.x_hi < 1.0, "the dense baseline (density 1) widened the axis to %g", g.x_hi);
  image_free(&im);

  /* Only some runs: the var run alone. */
  int64_t only = 2;
  bsa_viz_log_opts o;
  memset(&o, 0, sizeof o);
  o.run_ids = &only;
  o.num_run_ids = 1;
  ck_assert_int_eq(bsa_viz_speedup(log, db, &o, out, &g), BSA_OK);
  read_png(out, &im);
  bsa_viz_chart_point(&g, d_var[0], s_var[0], &px, &py);
  ck_assert(has_colour(&im, px, py, c0)); /* now the first and only series */
  image_free(&im);
  /* No bench metrics among these runs: an error naming the log, no file. */
  only = 3;
  const char *out2 = path_in_dir("none.png");
  ck_assert_int_eq(bsa_viz_speedup(log, db, &o, out2, NULL), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), db) && strstr(bsa_last_error(), "bench"), "%s",
                bsa_last_error());
  ck_assert_int_ne(access(out2, F_OK), 0);
  bsa_runlog_close(log);
  remove_dir();
}
END_TEST

START_TEST(test_recall_chart) {
  fresh_seed();
  make_dir();
  const char *db = path_in_dir("runs.db");
  bsa_runlog *log;
  ck_assert_int_eq(bsa_runlog_open(db, &log), BSA_OK);
  char *argv[] = {"bsa", "eval", NULL};
  /* Empty log first. */
  const char *out = path_in_dir("recall.png");
  ck_assert_int_eq(bsa_viz_recall(log, db, NULL, out, NULL), BSA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(bsa_last_error(), db) && strstr(bsa_last_error(), "eval"), "%s",
                bsa_last_error());
  ck_assert_int_ne(access(out, F_OK), 0);
  /* Run A (oracle): two records with summaries (head -1) and heads.
   * Run B (kmeans): one record with heads only (their mean is the value). */
  double xa[2], ya[2];
  bsa_run *run;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  for (int r = 0; r < 2; r++) {
    char rec[8];
    snprintf(rec, sizeof rec, "L%d", r);
    xa[r] = 0.05 + 0.3 * urand();
    ya[r] = 0.5 + 0.4 * urand();
    metric_pair(run, "recall", ya[r], xa[r], rec, -1, "{\"method\":\"oracle\"}");
    for (int h = 0; h < 2; h++)
      metric_pair(run, "recall", urand(), urand(), rec, h, "{\"method\":\"oracle\"}");
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  double xb = 0, yb = 0;
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  for (int h = 0; h < 3; h++) {
    double x = 0.05 + 0.3 * urand(), y = 0.5 + 0.4 * urand();
    xb += x / 3;
    yb += y / 3;
    metric_pair(run, "recall", y, x, "L0", h, "{\"method\":\"kmeans\"}");
  }
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  /* Run C (oracle again) on another trace: its own series. */
  double xc = 0.05 + 0.3 * urand(), yc = 0.5 + 0.4 * urand();
  ck_assert_int_eq(bsa_runlog_run_begin(log, "eval", 2, argv, &run), BSA_OK);
  ck_assert_int_eq(bsa_run_param(run, "trace", "/some/where/other-trace.h5"), BSA_OK);
  metric_pair(run, "recall", yc, xc, "L0", -1, "{\"method\":\"oracle\"}");
  ck_assert_int_eq(bsa_run_end(run, BSA_OK, NULL), BSA_OK);
  bsa_viz_chart_geom g;
  ck_assert_msg(bsa_viz_recall(log, db, NULL, out, &g) == BSA_OK, "%s", bsa_last_error());
  image im;
  read_png(out, &im);
  /* Sorted: "kmeans · (trace not recorded)", "oracle · (trace not
   * recorded)", "oracle · other-trace.h5". */
  uint8_t c0[3], c1[3], c2[3];
  bsa_viz_series_rgb(0, c0);
  bsa_viz_series_rgb(1, c1);
  bsa_viz_series_rgb(2, c2);
  /* Markers are drawn series by series: check those no later marker
   * covers. */
  double pa[2], pb[2], pc[2];
  bsa_viz_chart_point(&g, (xa[0] + xa[1]) / 2, (ya[0] + ya[1]) / 2, &pa[0], &pa[1]);
  bsa_viz_chart_point(&g, xb, yb, &pb[0], &pb[1]);
  bsa_viz_chart_point(&g, xc, yc, &pc[0], &pc[1]);
#define FAR(p, q) (hypot((p)[0] - (q)[0], (p)[1] - (q)[1]) > 10)
  ck_assert_msg(has_colour(&im, pc[0], pc[1], c2), "oracle point on the other trace missing %s",
                g_seedstr);
  if (FAR(pa, pc))
    ck_assert_msg(has_colour(&im, pa[0], pa[1], c1), "oracle point missing %s", g_seedstr);
  if (FAR(pb, pa) && FAR(pb, pc))
    ck_assert_msg(has_colour(&im, pb[0], pb[1], c0), "kmeans point missing %s", g_seedstr);
#undef FAR
  ck_assert(g.y_hi <= 1.02 + 1e-12 && g.y_lo >= 0);
  image_free(&im);
  bsa_runlog_close(log);
  remove_dir();
}
END_TEST

static Suite *viz_suite(void) {
  Suite *s = suite_create("viz");
  TCase *tc = tcase_create("figures");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_colormap);
  tcase_add_test(tc, test_masks_blocks);
  tcase_add_test(tc, test_masks_original_order);
  tcase_add_test(tc, test_masks_area_average_75k);
  tcase_add_test(tc, test_masks_fractional_pixels);
  tcase_add_test(tc, test_png_text);
  tcase_add_test(tc, test_masks_errors);
  tcase_add_test(tc, test_block_mass);
  tcase_add_test(tc, test_mask_recall);
  tcase_add_test(tc, test_scores_figure);
  tcase_add_test(tc, test_chart_points);
  tcase_add_test(tc, test_speedup_chart);
  tcase_add_test(tc, test_recall_chart);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(viz_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
