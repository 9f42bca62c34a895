/* diagnostics.c -- what the command says when something is wrong. */
#include <stdarg.h>
#include <string.h>

#include "cli.h"

int cli_quiet = 0;

static void verror(const char *fmt, va_list ap) {
  if (cli_quiet) return;
  fputs("parfill: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

void cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(fmt, ap);
  va_end(ap);
}

void cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(fmt, ap);
  va_end(ap);
  if (cli_quiet) return;
  cli_print_usage(stderr);
  fputs("Try 'parfill --help' for more information.\n", stderr);
}

/* The expression on one line, then a caret under byte `position`:
 *
 *   parfill: error: unknown name 'x' in expression
 *     sin(x) + 1
 *         ^
 *
 * Control characters print as spaces so the caret lines up; tabs are kept
 * in both lines, and UTF-8 continuation bytes take no column. */
void cli_expr_error(const char *expr, const pf_error *err) {
  if (cli_quiet) return;
  fprintf(stderr, "parfill: error: %s\n", err->message);
  size_t len = strlen(expr);
  /* A very long expression: show the 200 bytes around the fault. */
  size_t from = 0, to = len;
  int64_t pos = err->position;
  if (pos > (int64_t)len) pos = (int64_t)len;
  if (len > 200) {
    size_t center = pos >= 0 ? (size_t)pos : 0;
    from = center > 100 ? center - 100 : 0;
    to = from + 200 < len ? from + 200 : len;
  }
  fputs("  ", stderr);
  if (from > 0) fputs("...", stderr);
  for (size_t k = from; k < to; k++) {
    unsigned char c = (unsigned char)expr[k];
    fputc(c == '\t' || c >= 0x20 ? c : ' ', stderr);
  }
  if (to < len) fputs("...", stderr);
  fputc('\n', stderr);
  if (pos < 0) return;
  fputs(from > 0 ? "     " : "  ", stderr);
  for (size_t k = from; k < (size_t)pos; k++) {
    unsigned char c = (unsigned char)expr[k];
    if ((c & 0xc0) == 0x80) continue;
    fputc(c == '\t' ? '\t' : ' ', stderr);
  }
  fputs("^\n", stderr);
}
