/*
 * progress.c -- the progress bar, drawn from the fill's progress callback.
 *
 * The callback runs on the main thread about every 0.1 s while the pool's
 * threads work, so drawing costs the fill nothing. On a terminal the bar is
 * redrawn in place; elsewhere (--progress into a file or pipe) a line is
 * written at most once a second. Every tick also checks for Ctrl-C. A
 * write that fails (the pipe's reader has gone) ends the bar, not the fill.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, int show, int tty, size_t itemsize) {
  *p = (cli_progress){.show = show, .tty = tty, .itemsize = itemsize};
  p->start = now();
  p->last_draw = -1e9;
}

/* "512 B", "3.4 MiB", "2.98 GiB" */
static void format_bytes(char *buf, size_t size, double bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024 && u < 5) bytes /= 1024, u++;
  snprintf(buf, size, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
}

/* "0:07", "12:34", "1:02:03" */
static void format_duration(char *buf, size_t size, double seconds) {
  if (!(seconds >= 0) || seconds > 359999) {
    snprintf(buf, size, "--:--");
    return;
  }
  long s = (long)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

static int terminal_columns(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static void draw(cli_progress *p, int64_t done, int64_t total, double t) {
  double elapsed = t - p->start;
  double fraction = total > 0 ? (double)done / (double)total : 1.0;
  double bytes = (double)done * (double)p->itemsize;
  double rate = elapsed > 0 ? bytes / elapsed : 0;
  char now_s[32], total_s[32], rate_s[32], time_s[32];
  format_bytes(now_s, sizeof now_s, bytes);
  format_bytes(total_s, sizeof total_s, (double)total * (double)p->itemsize);
  format_bytes(rate_s, sizeof rate_s, rate);
  if (done >= total)
    format_duration(time_s, sizeof time_s, elapsed);
  else
    format_duration(time_s, sizeof time_s,
                    rate > 0 ? ((double)total - (double)done) *
                                   (double)p->itemsize / rate
                             : -1);
  char tail[160];
  snprintf(tail, sizeof tail, " %s/%s  %s/s  %s %s", now_s, total_s, rate_s,
           done >= total ? "in" : "ETA", time_s);
  int width = 30;
  if (p->tty) {
    int room = terminal_columns() - 8 - (int)strlen(tail) - 1;
    width = room < width ? room : width;
  }
  char bar[64];
  int n = 0;
  if (width >= 5) {
    int filled = (int)(fraction * width);
    bar[n++] = '[';
    for (int k = 0; k < width; k++)
      bar[n++] = k < filled ? '=' : k == filled ? '>' : ' ';
    bar[n++] = ']';
  }
  bar[n] = '\0';
  int written = fprintf(stderr, "%s%3d%% %s%s%s", p->tty ? "\r" : "",
                        (int)(fraction * 100), bar, tail,
                        p->tty ? "\033[K" : "\n");
  if (written < 0 || fflush(stderr) != 0) {
    /* Nobody reads the bar any more (EPIPE: the reader of a pipe is gone,
     * SIGPIPE being ignored; EIO: the terminal hung up): stop drawing and
     * let the fill go on. */
    clearerr(stderr);
    p->show = 0;
    p->drawn = 0;
    return;
  }
  p->drawn = p->tty;
}

int cli_progress_tick(void *ctx, int64_t done, int64_t total) {
  cli_progress *p = ctx;
  if (cli_interrupted) return PF_ECANCELED;
  if (!p->show) return 0;
  double t = now();
  double every = p->tty ? 0.1 : 1.0;
  /* The final tick (done == total) always draws, once. */
  if (p->finished) return 0;
  if (done >= total || t - p->last_draw >= every) {
    draw(p, done, total, t);
    p->last_draw = t;
    p->finished = done >= total;
  }
  return 0;
}

void cli_progress_finish(cli_progress *p, int ok) {
  (void)ok;
  if (p->show && p->drawn) fputc('\n', stderr);
  p->drawn = 0;
}
