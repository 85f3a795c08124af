/*
 * viz/png.c - the canvas (a Cairo image surface) and its PNG encoding with
 * libpng: opaque 8-bit RGB, text chunks, written to a temporary file and
 * renamed into place.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vizint.h"

bsa_status bsa__viz_canvas_create(int32_t width, int32_t height, bsa__viz_canvas *cv) {
  memset(cv, 0, sizeof *cv);
  if (width < 1 || height < 1 || width > 32767 || height > 32767)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                     "figure size %d x %d pixels is outside 1..32767 a side "
                     "(fewer heads or a smaller panel size)",
                     (int)width, (int)height);
  cv->surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
  if (cairo_surface_status(cv->surface) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(cv->surface);
    cv->surface = NULL;
    return bsa__fail(NULL, BSA_ERR_NOMEM, "cannot allocate a %d x %d image", (int)width,
                     (int)height);
  }
  cv->cr = cairo_create(cv->surface);
  if (cairo_status(cv->cr) != CAIRO_STATUS_SUCCESS) {
    bsa__viz_canvas_destroy(cv);
    return bsa__fail(NULL, BSA_ERR_NOMEM, "cannot create a drawing context");
  }
  cv->width = width;
  cv->height = height;
  cairo_set_source_rgb(cv->cr, 1, 1, 1);
  cairo_paint(cv->cr);
  return BSA_OK;
}

void bsa__viz_canvas_destroy(bsa__viz_canvas *cv) {
  if (cv->cr) cairo_destroy(cv->cr);
  if (cv->surface) cairo_surface_destroy(cv->surface);
  cv->cr = NULL;
  cv->surface = NULL;
}

/* ---- temporary files ----------------------------------------------------- */

/* "dir/.base.tmp-XXXXXX" beside path; malloc'ed. */
static char *temp_name(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
  const char *base = slash ? slash + 1 : path;
  size_t n = strlen(path) + 16;
  char *t = malloc(n);
  if (!t) return NULL;
  snprintf(t, n, "%.*s.%s.tmp-XXXXXX", (int)dirlen, path, base);
  return t;
}

static bsa_status check_path(const char *path) {
  if (!path || !*path) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "png_path is empty or NULL");
  size_t n = strlen(path);
  if (path[n - 1] == '/')
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "png_path '%s' names a folder, not a file", path);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "png_path '%s' is a folder, not a file", path);
  return BSA_OK;
}

/* Creates the temporary file; on failure explains with the folder. */
static bsa_status open_temp(const char *path, char **tmp, int *fd) {
  bsa_status st = check_path(path);
  if (st != BSA_OK) return st;
  *tmp = temp_name(path);
  if (!*tmp) return bsa__fail(NULL, BSA_ERR_NOMEM, "out of memory");
  *fd = mkstemp(*tmp);
  if (*fd < 0) {
    int e = errno;
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
      snprintf(dir, sizeof dir, ".");
    else if (slash == path)
      snprintf(dir, sizeof dir, "/");
    else
      snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    free(*tmp);
    *tmp = NULL;
    return bsa__fail(NULL, BSA_ERR_IO,
                     "cannot write '%s': cannot create a file in folder "
                     "'%s': %s",
                     path, dir, strerror(e));
  }
  /* mkstemp creates 0600; a figure is an ordinary file (0666 & ~umask). */
  mode_t um = umask(0);
  umask(um);
  if (fchmod(*fd, 0666 & ~um) != 0) { /* not fatal: the file stays private */
  }
  return BSA_OK;
}

bsa_status bsa__viz_check_writable(const char *path) {
  char *tmp = NULL;
  int fd = -1;
  bsa_status st = open_temp(path, &tmp, &fd);
  if (st != BSA_OK) return st;
  close(fd);
  unlink(tmp);
  free(tmp);
  return BSA_OK;
}

/* ---- libpng -------------------------------------------------------------- */

typedef struct png_err {
  jmp_buf jmp;
  char msg[256];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_err *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  longjmp(e->jmp, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* warnings do not change the file; nothing to report */
}

/* Whether s is Latin-1 printable text that a tEXt chunk may hold (ASCII
 * here: UTF-8 bytes above 0x7f would be misread as Latin-1). */
static int is_ascii(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p >= 0x80) return 0;
  return 1;
}

static int valid_key(const char *k) {
  size_t n = k ? strlen(k) : 0;
  if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    if (c < 32 || c > 126 || (c == ' ' && k[i + 1] == ' ')) return 0;
  }
  return 1;
}

bsa_status bsa__viz_png_write(bsa__viz_canvas *cv, const char *title, const bsa_viz_text *meta,
                              int32_t num_meta, const char *path) {
  for (int32_t i = 0; i < num_meta; i++)
    if (!valid_key(meta[i].key) || !meta[i].value)
      return bsa__fail(NULL, BSA_ERR_INVALID_ARG,
                       "meta[%d]: key '%s' is not a PNG text keyword (1..79 "
                       "printable ASCII characters, no leading, trailing or "
                       "double spaces) or its value is NULL",
                       (int)i, meta[i].key ? meta[i].key : "(null)");
  char *tmp = NULL;
  int fd = -1;
  bsa_status st = open_temp(path, &tmp, &fd);
  if (st != BSA_OK) return st;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    int e = errno;
    close(fd);
    unlink(tmp);
    free(tmp);
    return bsa__fail(NULL, BSA_ERR_IO, "cannot write '%s': %s", path, strerror(e));
  }

  cairo_surface_flush(cv->surface);
  const unsigned char *data = cairo_image_surface_get_data(cv->surface);
  int stride = cairo_image_surface_get_stride(cv->surface);
  int32_t w = cv->width, h = cv->height;
  unsigned char *row = malloc((size_t)w * 3);
  int32_t nt = num_meta + 2;
  png_text *text = calloc((size_t)nt, sizeof *text);
  char software[64];
  snprintf(software, sizeof software, "bsa %s", bsa_version());

  png_err err;
  err.msg[0] = 0;
  png_structp png = NULL;
  png_infop info = NULL;
  volatile int ok = 0;
  if (row && text) {
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    if (png) info = png_create_info_struct(png);
  }
  if (png && info) {
    if (setjmp(err.jmp) == 0) {
      png_init_io(png, f);
      png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                   PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
      int k = 0;
      text[k].compression = PNG_TEXT_COMPRESSION_NONE;
      text[k].key = "Software";
      text[k].text = software;
      k++;
      if (title) {
        text[k].compression =
            is_ascii(title) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        text[k].key = "Title";
        text[k].text = (char *)title;
        k++;
      }
      for (int32_t i = 0; i < num_meta; i++, k++) {
        text[k].compression =
            is_ascii(meta[i].value) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        text[k].key = (char *)meta[i].key;
        text[k].text = (char *)meta[i].value;
      }
      png_set_text(png, info, text, k);
      png_write_info(png, info);
      for (int32_t yy = 0; yy < h; yy++) {
        const uint32_t *src = (const uint32_t *)(data + (size_t)yy * stride);
        for (int32_t xx = 0; xx < w; xx++) {
          /* The canvas is opaque (painted white first), so the
           * premultiplied ARGB values are the colour itself. */
          uint32_t p = src[xx];
          row[3 * xx + 0] = (unsigned char)(p >> 16);
          row[3 * xx + 1] = (unsigned char)(p >> 8);
          row[3 * xx + 2] = (unsigned char)p;
        }
        png_write_row(png, row);
      }
      png_write_end(png, info);
      ok = 1;
    }
  }
  png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
  free(row);
  free(text);

  int e = 0;
  if (ok) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
      e = errno;
      ok = 0;
    }
  } else if (!err.msg[0]) {
    e = ENOMEM;
  }
  if (fclose(f) != 0 && ok) {
    e = errno;
    ok = 0;
  }
  if (ok && rename(tmp, path) != 0) {
    e = errno;
    ok = 0;
  }
  if (!ok) {
    unlink(tmp);
    free(tmp);
    if (err.msg[0])
      return bsa__fail(NULL, BSA_ERR_IO, "cannot write '%s': libpng: %s", path, err.msg);
    return bsa__fail(NULL, e == ENOMEM ? BSA_ERR_NOMEM : BSA_ERR_IO, "cannot write '%s': %s", path,
                     strerror(e));
  }
  free(tmp);
  return BSA_OK;
}
