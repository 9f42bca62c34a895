/*
 * cli.h -- the `parfill` command's files, which use only parfill.h:
 *   options.c      command line -> pf_fill options, shape, dtype, parameters
 *   progress.c     the progress bar, and the Ctrl-C check on every tick
 *   diagnostics.c  messages: usage, errors, an expression with a caret
 *   main.c         main(): dispatch, signals, the fill, exit codes
 *   mpi.c          build/parfill-mpi only (-DPF_CLI_MPI, mpicc): the fill
 *                  by R MPI ranks into one file
 */
#ifndef PF_CLI_H
#define PF_CLI_H

#include <signal.h>
#include <stdio.h>

#include "parfill.h"

/* Exit codes (README, `parfill --help`). */
enum {
  CLI_OK = 0,
  CLI_FAILED = 1,     /* I/O error, out of memory, ... */
  CLI_USAGE = 2,      /* bad usage, bad expression, output exists */
  CLI_INTERRUPTED = 130
};

#define CLI_MAX_PARAMS 256

typedef struct cli_fill_args {
  const char *expr;
  const char *output;
  int ndim;
  int64_t shape[PF_MAX_DIMS];
  pf_dtype dtype;
  pf_param params[CLI_MAX_PARAMS];
  size_t nparams;
  int workers; /* 0: every usable CPU */
  pf_schedule schedule;
  int64_t chunk; /* 0: auto */
  int progress;  /* -1: when stderr is a terminal, 0: off, 1: on */
  int force;
} cli_fill_args;

/* Parses the arguments after "fill". Returns 0, or CLI_USAGE after printing
 * the problem and the usage line to stderr. Pointers in *args point into
 * argv. */
int cli_parse_fill(int argc, char **argv, cli_fill_args *args);

/* Parses "20000x20000", "5", "0x5", "2,3,4" into shape; returns 0 or -1 with
 * a reason in why[size]. */
int cli_parse_shape(const char *text, int *ndim, int64_t *shape, char *why,
                    size_t size);

/* The help text and the usage line. */
void cli_print_help(FILE *f);
void cli_print_usage(FILE *f);

/* "parfill: error: <formatted>" and the usage line on stderr. */
void cli_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* "parfill: error: <formatted>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The expression error: message, the expression, a caret under err->position. */
void cli_expr_error(const char *expr, const pf_error *err);

/* Nonzero: the messages above print nothing (the MPI ranks other than 0;
 * rank 0 speaks for the job). */
extern int cli_quiet;

/* What follows the message of PF_EEXIST (the output exists): the hint to
 * use --force, or "" when it was given (the file could still not be
 * replaced: a directory, say). Its exit status is CLI_USAGE. */
const char *cli_exists_hint(int force);

/* 1 for the codes of a bad expression (syntax, name, type, limit). */
int cli_is_expr_error(int code);

/* The first terminating signal caught during the fill (SIGINT, SIGTERM,
 * SIGUSR1, ...: see main.c), or 0. */
extern volatile sig_atomic_t cli_interrupted;

/* Progress: a pf_progress_fn whose ctx is a cli_progress. It draws the bar
 * when `show` is set, and always returns PF_ECANCELED once cli_interrupted
 * is set -- the fill checks it every tick, so Ctrl-C stops it promptly. */
typedef struct cli_progress {
  int show;
  int tty;
  size_t itemsize;
  double start;
  double last_draw;
  int drawn;    /* something is on the current line */
  int finished; /* the 100% line is drawn */
} cli_progress;

void cli_progress_init(cli_progress *p, int show, int tty, size_t itemsize);
int cli_progress_tick(void *ctx, int64_t done, int64_t total);
/* Ends the bar's line (after success or failure). */
void cli_progress_finish(cli_progress *p, int ok);

/* A path the signal handler unlinks (async-signal-safe) when a terminating
 * signal arrives, before anything else: the MPI temporary file on rank 0,
 * which Open MPI's SIGTERM to the survivors of a killed rank must not
 * leave behind. Disarm before the file is renamed. */
void cli_arm_unlink(const char *path);
void cli_disarm_unlink(void);

/* mpi.c: MPI_Init_thread (rank != 0 turns quiet and its stdout goes to
 * /dev/null), the fill (all ranks; returns the exit status every rank
 * agreed on), MPI_Finalize (once, however often called). */
void cli_mpi_init(int *argc, char ***argv);
int cli_mpi_fill(int argc, char **argv);
void cli_mpi_finalize(void);

#endif /* PF_CLI_H */
