/*
 * runlog/textout.c - exact text encodings the log writes: JSON strings,
 * numbers that read back bit for bit, RFC 4180 CSV fields, and the command
 * line as a JSON array and as a shell-quoted string.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runlog_int.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there
 * are not one (overlong forms, surrogates and values past U+10FFFF are
 * rejected, as RFC 3629 asks). */
static int utf8_seq_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  int n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void bsa__json_string(FILE *f, const char *str) {
  const unsigned char *s = (const unsigned char *)(str ? str : "");
  fputc('"', f);
  while (*s) {
    unsigned c = *s;
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc((int)c, f);
      s++;
    } else if (c < 0x20) {
      switch (c) {
        case '\n':
          fputs("\\n", f);
          break;
        case '\r':
          fputs("\\r", f);
          break;
        case '\t':
          fputs("\\t", f);
          break;
        case '\b':
          fputs("\\b", f);
          break;
        case '\f':
          fputs("\\f", f);
          break;
        default:
          fprintf(f, "\\u%04x", c);
          break;
      }
      s++;
    } else if (c < 0x80) {
      fputc((int)c, f);
      s++;
    } else {
      int n = utf8_seq_len(s);
      if (n == 0) {
        fputs("\\ufffd", f);
        s++;
      } else {
        fwrite(s, 1, (size_t)n, f);
        s += n;
      }
    }
  }
  fputc('"', f);
}

void bsa__fmt_double(double v, char buf[40]) {
  if (isnan(v)) {
    strcpy(buf, "nan");
    return;
  }
  if (isinf(v)) {
    strcpy(buf, v > 0 ? "inf" : "-inf");
    return;
  }
  /* The fewest significant digits that read back as the same double. */
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, 40, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

void bsa__csv_field(FILE *f, const char *s) {
  if (!s) return;
  size_t len = strlen(s);
  int quote = len > 0 && (s[0] == ' ' || s[len - 1] == ' ');
  for (const char *p = s; *p && !quote; p++)
    quote = *p == ',' || *p == '"' || *p == '\r' || *p == '\n';
  if (!quote) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (const char *p = s; *p; p++) {
    if (*p == '"') fputc('"', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

char *bsa__runlog_argv_json(int argc, char *const *argv) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  fputc('[', f);
  for (int i = 0; i < argc; i++) {
    if (i) fputc(',', f);
    bsa__json_string(f, argv[i]);
  }
  fputc(']', f);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Characters a POSIX shell takes literally outside quotes.  '=' is not
 * literal in the first word (NAME=value is an assignment there). */
static int shell_safe(const char *s, int first) {
  if (!*s || (first && strchr(s, '='))) return 0;
  for (; *s; s++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                "_@%+=:,./-",
                *s))
      return 0;
  return 1;
}

char *bsa__runlog_argv_shell(int argc, char *const *argv) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  for (int i = 0; i < argc; i++) {
    if (i) fputc(' ', f);
    const char *a = argv[i] ? argv[i] : "";
    if (shell_safe(a, i == 0)) {
      fputs(a, f);
      continue;
    }
    /* Single quotes keep everything literal; a quote itself is closed,
     * escaped and reopened: it's -> 'it'\''s'. */
    fputc('\'', f);
    for (const char *p = a; *p; p++) {
      if (*p == '\'')
        fputs("'\\''", f);
      else
        fputc(*p, f);
    }
    fputc('\'', f);
  }
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
