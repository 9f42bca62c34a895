/*
 * main.c -- `parfill`: the command-line front end of libparfill.
 *
 *   parfill fill EXPR --shape 20000x20000 [...] -o OUT.npy
 *   parfill --help | --version
 *
 * Signals (during `fill` only; --help and --version keep the defaults):
 * every catchable signal whose default is to end the process -- SIGINT,
 * SIGTERM, SIGHUP, and SIGQUIT, SIGUSR1/2, SIGALRM, SIGVTALRM, SIGPROF,
 * SIGXCPU, SIGIO, SIGPWR, SIGSTKFLT, the real-time signals -- only records
 * itself in a flag (the handler resets itself, so a second one kills at
 * once). The fill's progress callback runs on this thread about every
 * 0.1 s, sees the flag and cancels; the library then removes whatever it
 * created. SIGINT, SIGTERM and SIGHUP then exit 130 ("interrupted"); the
 * others are raised again with their default action, so the parent sees
 * the process killed by that signal. A signal the parent set to be ignored
 * (nohup, a background job) stays ignored. The handlers only set the flag:
 * no cleanup in signal context, no async-signal-unsafe calls. The pool's
 * threads block every signal, so handlers always run here.
 *
 * Where the filesystem has O_TMPFILE the file being written has no name
 * until it is complete, so even SIGKILL (or a crash) leaves nothing; the
 * handlers matter for the named fallback.
 *
 * SIGPIPE is ignored: a progress bar or message written to a closed pipe
 * (`parfill ... --progress 2>&1 | head -c 20`) is an EPIPE write error
 * that stops the bar, not a kill in the middle of the fill. SIGXFSZ is
 * ignored, so exceeding the file size limit (ulimit -f) is an EFBIG error
 * the library reports instead of a kill.
 */
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted = 0;

static char unlink_path[PATH_MAX];
static volatile sig_atomic_t unlink_armed = 0;

void cli_arm_unlink(const char *path) {
  snprintf(unlink_path, sizeof unlink_path, "%s", path);
  /* The path is complete before the handler may see the flag. */
  atomic_signal_fence(memory_order_seq_cst);
  unlink_armed = 1;
}

void cli_disarm_unlink(void) {
  unlink_armed = 0;
  atomic_signal_fence(memory_order_seq_cst);
}

static void on_signal(int sig) {
  if (unlink_armed) {
    unlink_armed = 0;
    unlink(unlink_path);
  }
  /* The first signal wins: it decides the exit. */
  if (cli_interrupted == 0) cli_interrupted = sig;
}

/* Signals that end the process by default and may be caught (SIGSEGV and
 * the other faults excepted: they cannot be returned from). */
static const int terminating[] = {
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM,
    SIGPROF, SIGXCPU, SIGIO, SIGPWR, SIGSTKFLT};

static void catch_signal(int sig) {
  struct sigaction old;
  if (sigaction(sig, NULL, &old) != 0 || old.sa_handler == SIG_IGN) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(sig, &sa, NULL);
}

static void install_signals(void) {
  for (size_t k = 0; k < sizeof terminating / sizeof *terminating; k++)
    catch_signal(terminating[k]);
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++) catch_signal(sig);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
}

static int is_interrupt(int sig) {
  return sig == SIGINT || sig == SIGTERM || sig == SIGHUP;
}

/* After the fill and its cleanup: dies of the caught signal, as it would
 * have without our handler. */
static void reraise(int sig) {
  fflush(stderr);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  /* Not reached for a terminating signal; be sure anyway. */
  _exit(128 + sig);
}

#ifndef PF_CLI_MPI
/* The .npy fill's flags. PARFILL_NAMED_TEMP=1 in the environment
 * selects the named temporary file even where O_TMPFILE works (the tests
 * use it to cover that path). */
static unsigned npy_flags(const cli_fill_args *a) {
  const char *named = getenv("PARFILL_NAMED_TEMP");
  return (a->force ? PF_NPY_FORCE : 0) |
         (named != NULL && strcmp(named, "1") == 0 ? PF_NPY_NAMED_TEMP : 0);
}
#endif

const char *cli_exists_hint(int force) {
  return force ? "" : " (use --force to replace it)";
}

int cli_is_expr_error(int code) {
  return code == PF_ESYNTAX || code == PF_ENAME || code == PF_ETYPE ||
         code == PF_ELIMIT;
}

static int run_fill(int argc, char **argv) {
#ifdef PF_CLI_MPI
  int status = cli_mpi_fill(argc, argv);
  int caught = cli_interrupted;
  if (caught != 0 && !is_interrupt(caught)) {
    cli_mpi_finalize();
    reraise(caught);
  }
  return status;
#else
  cli_fill_args a;
  int rc = cli_parse_fill(argc, argv, &a);
  if (rc != 0) return rc;

  pf_error err;
  memset(&err, 0, sizeof err);
  pf_expr *expr = NULL;
  rc = pf_expr_compile(&expr, a.expr, a.ndim, a.params, a.nparams, &err);
  if (rc != 0) {
    if (cli_is_expr_error(rc)) {
      cli_expr_error(a.expr, &err);
      return CLI_USAGE;
    }
    /* PF_EINVAL here is a bad -D (a parameter named like an index). */
    cli_error("%s", err.message);
    return rc == PF_ENOMEM ? CLI_FAILED : CLI_USAGE;
  }

  cli_progress progress;
  int show = a.progress == 1 || (a.progress == -1 && isatty(STDERR_FILENO));
  cli_progress_init(&progress, show, isatty(STDERR_FILENO),
                    pf_dtype_size(a.dtype));
  pf_fill_options options = PF_FILL_OPTIONS_DEFAULTS;
  options.workers = a.workers;
  options.schedule = a.schedule;
  options.chunk = a.chunk;
  options.progress = cli_progress_tick;
  options.progress_ctx = &progress;
  options.progress_interval = 0.1;
  if (cli_interrupted) {
    rc = PF_ECANCELED;
  } else {
    rc = pf_npy_fill_expr(a.output, expr, a.dtype, a.ndim, a.shape, &options,
                          npy_flags(&a), &err);
  }
  cli_progress_finish(&progress, rc == 0);
  pf_expr_free(expr);

  /* Everything is cleaned up (or the file complete): now die of it. */
  int sig = cli_interrupted;
  if (sig != 0 && !is_interrupt(sig)) reraise(sig);
  if (rc == 0) return CLI_OK;
  if (rc == PF_ECANCELED && cli_interrupted) {
    fputs("parfill: interrupted\n", stderr);
    return CLI_INTERRUPTED;
  }
  if (rc == PF_EEXIST) {
    cli_error("%s%s", err.message, cli_exists_hint(a.force));
    return CLI_USAGE;
  }
  if (cli_is_expr_error(rc) && err.position >= 0) {
    cli_expr_error(a.expr, &err);
    return CLI_USAGE;
  }
  cli_error("%s", err.message);
  return CLI_FAILED;
#endif
}

/* Output to stdout that could not be written is a failure (`> /dev/full`). */
static int finish_stdout(int status) {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    cli_error("cannot write to standard output");
    return CLI_FAILED;
  }
  return status;
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) {
    cli_usage_error("no command given");
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    cli_print_help(stdout);
    return finish_stdout(CLI_OK);
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("parfill %s\n", pf_version());
    return finish_stdout(CLI_OK);
  }
  if (strcmp(cmd, "fill") == 0) {
    for (int k = 2; k < argc && strcmp(argv[k], "--") != 0; k++)
      if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
        cli_print_help(stdout);
        return finish_stdout(CLI_OK);
      }
    install_signals();
    return run_fill(argc - 2, argv + 2);
  }
  cli_usage_error("unknown command '%s'", cmd);
  return CLI_USAGE;
}

int main(int argc, char **argv) {
#ifdef PF_CLI_MPI
  cli_mpi_init(&argc, &argv);
  int status = dispatch(argc, argv);
  cli_mpi_finalize();
  return status;
#else
  return dispatch(argc, argv);
#endif
}
