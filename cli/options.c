/* options.c -- the command line of `parfill fill`, and the help text. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

void cli_print_usage(FILE *f) {
  fputs("usage: parfill fill EXPR --shape SHAPE [--dtype DTYPE] "
        "[-D NAME=VALUE]...\n"
        "                    [--workers N] [--schedule static|dynamic|guided] "
        "[--chunk N]\n"
        "                    [--progress | --no-progress] [--force] -o "
        "OUT.npy\n"
        "       parfill --help | --version\n",
        f);
#ifdef PF_CLI_MPI
  fputs("       mpiexec -n R parfill-mpi fill ... (the same options)\n", f);
#endif
}

void cli_print_help(FILE *f) {
  cli_print_usage(f);
  fputs(
      "\n"
      "Writes OUT.npy with a[idx] = EXPR for every index of SHAPE, computed\n"
      "in parallel on every CPU and written in place: memory use does not grow\n"
      "with the file, and OUT.npy appears only once it is complete.\n"
      "\n"
      "EXPR: an arithmetic expression of the indices i, j, k, l (axes 0..3),\n"
      "  i0..i31 (any axis), idx (flat C-order index), size, n0..n31 (axis\n"
      "  lengths), the parameters given with -D, numbers, pi, e, inf, nan,\n"
      "  True, False; operators + - * / // % ** < <= > >= == != & | ~ with\n"
      "  Python's precedence; functions where(c, a, b), sin cos tan arcsin\n"
      "  arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh exp exp2\n"
      "  expm1 log log2 log10 log1p sqrt cbrt abs floor ceil trunc rint sign\n"
      "  square hypot fmod copysign minimum maximum; uniform() in [0, 1) and\n"
      "  normal() (standard normal), reproducible random numbers of idx under\n"
      "  -D seed=S (0 <= S < 2**128, default 0; uniform() is NumPy's\n"
      "  Generator(Philox(key=S)).random()), uniform(N) and normal(N) for\n"
      "  other independent streams N >= 0.\n"
      "  Integer-only expressions compute in int64, the others in float64;\n"
      "  the result is cast to DTYPE as NumPy's astype casts it. An EXPR that\n"
      "  starts with '-' goes after '--' (or in parentheses).\n"
      "\n"
      "options:\n"
      "  --shape SHAPE         axis lengths joined by 'x' (or ','): 20000x20000,\n"
      "                        5 (1-d), 0x5 (empty); at most 32 axes\n"
      "  --dtype DTYPE         NumPy dtype name: float64 (default), float32,\n"
      "                        int64, uint8, bool, complex128, f4, i8, ...\n"
      "  -D NAME=VALUE         a parameter of EXPR: an integer as Python writes\n"
      "                        it (42, -7, 0x2a, 0o52, 0b101010, 1_000; within\n"
      "                        int64), a float (2.5, 1e-3, inf) or True/False;\n"
      "                        repeatable\n"
      "  --workers N           threads (default: the CPUs this process may use)\n"
      "  --schedule S          static, dynamic (default) or guided\n"
      "  --chunk N             elements per chunk (minimum for guided), rounded\n"
      "                        up to whole 1 MiB write blocks; default: auto\n"
      "  --progress            progress bar with rate and ETA on stderr\n"
      "                        (default when stderr is a terminal)\n"
      "  --no-progress         no progress bar\n"
      "  -f, --force           replace OUT.npy if it exists and is a regular\n"
      "                        file (default: refuse, and leave it untouched)\n"
      "  -o, --output OUT.npy  the file to write (required; no suffix added)\n"
      "  -h, --help            this help\n"
      "  -V, --version         the version\n"
      "\n"
      "exit status: 0 done; 1 I/O or other failure (no file left behind);\n"
      "  2 bad usage, bad expression, or OUT.npy exists without --force;\n"
      "  130 interrupted (SIGINT/SIGTERM/SIGHUP; no file left behind).\n"
      "  Other terminating signals (SIGUSR1, SIGALRM, ...) also leave no file\n"
      "  and end parfill by that signal; SIGPIPE is ignored.\n"
      "\n"
#ifdef PF_CLI_MPI
      "MPI (parfill-mpi): under mpiexec the R ranks write the one file\n"
      "  together, each a contiguous slab with --workers threads (default:\n"
      "  the CPUs the rank may use); the file is the one `parfill` writes.\n"
      "  Rank 0 prints; every rank exits with the same status. A rank killed\n"
      "  by SIGKILL fails the job; if it was rank 0, OUT.npy is not created\n"
      "  but '.OUT.npy.XXXXXX.tmp' may be left next to it: remove it.\n"
      "  Without mpiexec it runs as one rank.\n"
      "\n"
#endif
      "examples:\n"
      "  parfill fill 'sin(i*0.001)*cos(j*0.001)' --shape 20000x20000 -o x.npy\n"
      "  parfill fill 'i*n1 + j' --shape 1000x1000 --dtype int32 -o ramp.npy\n"
      "  parfill fill 'hypot(i - n0/2, j - n1/2) * scale' -D scale=0.5 \\\n"
      "      --shape 1000x1000 --dtype float32 -o distance.npy\n"
      "  parfill fill 'where((i-n0/2)**2 + (j-n1/2)**2 < r**2, 1, 0)' \\\n"
      "      -D r=300 --shape 1000x1000 --dtype uint8 --force -o disc.npy\n"
      "  python -c 'import numpy; print(numpy.load(\"x.npy\", mmap_mode=\"r\"))'\n",
      f);
}

int cli_parse_shape(const char *text, int *ndim, int64_t *shape, char *why,
                    size_t size) {
  int n = 0;
  const char *p = text;
  if (*p == '\0') {
    snprintf(why, size, "empty shape");
    return -1;
  }
  for (;;) {
    if (*p < '0' || *p > '9') {
      snprintf(why, size, "'%s' is not a shape like 20000x20000", text);
      return -1;
    }
    if (n == PF_MAX_DIMS) {
      snprintf(why, size, "more than %d axes", PF_MAX_DIMS);
      return -1;
    }
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
      if (__builtin_mul_overflow(v, 10, &v) ||
          __builtin_add_overflow(v, *p - '0', &v)) {
        snprintf(why, size, "axis length in '%s' too large", text);
        return -1;
      }
    }
    shape[n++] = v;
    if (*p == '\0') break;
    if (*p != 'x' && *p != 'X' && *p != ',') {
      snprintf(why, size, "'%s' is not a shape like 20000x20000", text);
      return -1;
    }
    p++;
  }
  *ndim = n;
  return 0;
}

/* A decimal integer filling all of text. */
static int parse_int(const char *text, int64_t *value) {
  if (*text == '\0' || *text == ' ') return -1;
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *value = v;
  return 0;
}

/* Python's integer literal with an optional sign: decimal, 0x.., 0o..,
 * 0b.., with PEP 515 underscores between digits (and after the prefix).
 * Returns 1 with *neg and the magnitude in *value (*overflow when it does
 * not fit in 128 bits, *leading_zero for a decimal such as 010, which
 * Python refuses), or 0 when text is not an integer literal at all. */
static int int_literal(const char *text, int *neg, unsigned __int128 *value,
                       int *overflow, int *leading_zero) {
  const char *p = text;
  *neg = 0;
  *value = 0;
  *overflow = *leading_zero = 0;
  if (*p == '+' || *p == '-') *neg = *p++ == '-';
  int base = 10;
  if (p[0] == '0' && p[1] != '\0' && strchr("xXoObB", p[1]) != NULL) {
    base = p[1] == 'x' || p[1] == 'X' ? 16 : p[1] == 'o' || p[1] == 'O' ? 8
                                                                        : 2;
    p += 2;
  }
  const char *first = p;
  int ndigits = 0, underscore_ok = base != 10, last_underscore = 0;
  for (; *p != '\0'; p++) {
    if (*p == '_') {
      if (!underscore_ok) return 0;
      underscore_ok = 0;
      last_underscore = 1;
      continue;
    }
    int d = *p >= '0' && *p <= '9'   ? *p - '0'
            : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
            : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                                     : 99;
    if (d >= base) return 0;
    unsigned __int128 next = *value * (unsigned)base + (unsigned)d;
    if (*value > (~(unsigned __int128)0 - (unsigned)d) / (unsigned)base)
      *overflow = 1;
    *value = next;
    ndigits++;
    underscore_ok = 1;
    last_underscore = 0;
  }
  if (ndigits == 0 || last_underscore) return 0;
  if (base == 10 && first[0] == '0' && (*value != 0 || *overflow))
    *leading_zero = 1;
  return 1;
}

/* Python's float literal with an optional sign (digits with PEP 515
 * underscores, a point and/or an exponent), or inf, infinity, nan in any
 * case -- not C's extras (hex floats, nan(...)). Returns 0 with *value, -1
 * when text is not one, -2 when it overflows float64. */
static int float_literal(const char *text, double *value) {
  const char *p = text;
  if (*p == '+' || *p == '-') p++;
  if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0 ||
      strcasecmp(p, "nan") == 0) {
    *value = strtod(text, NULL);
    return 0;
  }
  size_t len = strlen(text);
  char *clean = malloc(len + 1);
  if (clean == NULL) return -1;
  size_t n = 0;
  if (text[0] == '+' || text[0] == '-') clean[n++] = text[0];
  int digits = 0, point = 0, exponent = 0, prev_digit = 0, ok = 1;
  for (; *p != '\0' && ok; p++) {
    char c = *p;
    if (c >= '0' && c <= '9') {
      digits++;
      prev_digit = 1;
      clean[n++] = c;
    } else if (c == '_') {
      /* between two digits only */
      ok = prev_digit && p[1] >= '0' && p[1] <= '9';
      prev_digit = 0;
    } else if (c == '.' && !point && !exponent) {
      point = 1;
      prev_digit = 0;
      clean[n++] = c;
    } else if ((c == 'e' || c == 'E') && digits > 0 && !exponent) {
      exponent = 1;
      prev_digit = 0;
      clean[n++] = c;
      if (p[1] == '+' || p[1] == '-') clean[n++] = *++p;
      ok = p[1] >= '0' && p[1] <= '9';
    } else {
      ok = 0;
    }
  }
  clean[n] = '\0';
  int rc = -1;
  if (ok && digits > 0) {
    char *end;
    errno = 0;
    *value = strtod(clean, &end);
    if (*end == '\0')
      rc = errno == ERANGE && (*value > 1 || *value < -1) ? -2 : 0;
  }
  free(clean);
  return rc;
}

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t k = 0; k < n; k++) {
    char c = s[k];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

/* NAME=VALUE: an int, else a float, else True/False. */
static int parse_define(const char *text, cli_fill_args *args) {
  const char *eq = strchr(text, '=');
  if (eq == NULL || !is_identifier(text, (size_t)(eq - text))) {
    cli_usage_error("-D expects NAME=VALUE with NAME an identifier, not '%s'",
                    text);
    return CLI_USAGE;
  }
  size_t name_len = (size_t)(eq - text);
  for (size_t k = 0; k < args->nparams; k++)
    if (strlen(args->params[k].name) == name_len &&
        memcmp(args->params[k].name, text, name_len) == 0) {
      cli_usage_error("parameter '%.*s' given twice", (int)name_len, text);
      return CLI_USAGE;
    }
  if (args->nparams == CLI_MAX_PARAMS) {
    cli_usage_error("more than %d parameters", CLI_MAX_PARAMS);
    return CLI_USAGE;
  }
  /* The name must be NUL-terminated for pf_expr_compile: keep a copy. The
   * copies live until exit (the process is short-lived). */
  char *name = strndup(text, name_len);
  if (name == NULL) {
    cli_error("out of memory");
    return CLI_FAILED;
  }
  pf_param *p = &args->params[args->nparams];
  const char *value = eq + 1;
  p->name = name;
  int neg, overflow, leading_zero;
  unsigned __int128 u;
  const int is_seed = strcmp(name, "seed") == 0;
  if (int_literal(value, &neg, &u, &overflow, &leading_zero)) {
    /* Integers exactly as Python's int literals; never silently a float. */
    const unsigned __int128 max = is_seed && !neg ? ~(unsigned __int128)0
                                  : neg ? (unsigned __int128)INT64_MAX + 1
                                        : (unsigned __int128)INT64_MAX;
    if (leading_zero) {
      cli_usage_error("-D %s=%s: leading zeros are not allowed in a decimal "
                      "integer (as in Python: write 0o%s for octal)", name,
                      value, value + strspn(value, "+-0_"));
    } else if (overflow || u > max) {
      cli_usage_error("-D %s=%s: the integer does not fit in %s", name, value,
                      is_seed && !neg ? "[0, 2**128)"
                                      : "int64 (-2**63 .. 2**63-1)");
    } else if (u > (unsigned __int128)INT64_MAX && !neg) {
      p->kind = PF_PARAM_UINT128;
      p->u[0] = (uint64_t)u;
      p->u[1] = (uint64_t)(u >> 64);
    } else {
      p->kind = PF_PARAM_INT;
      p->i = neg ? (int64_t)(0 - (uint64_t)u) : (int64_t)u;
    }
    if (leading_zero || overflow || u > max) {
      free(name);
      return CLI_USAGE;
    }
  } else if (strcmp(value, "True") == 0 || strcmp(value, "False") == 0) {
    p->kind = PF_PARAM_BOOL;
    p->i = value[0] == 'T';
  } else {
    int rc = float_literal(value, &p->f);
    if (rc != 0) {
      free(name);
      if (rc == -2)
        cli_usage_error("-D %.*s: '%s' is out of range for float64",
                        (int)name_len, text, value);
      else
        cli_usage_error("-D %.*s: '%s' is not an integer, a float or "
                        "True/False", (int)name_len, text, value);
      return CLI_USAGE;
    }
    p->kind = PF_PARAM_FLOAT;
  }
  args->nparams++;
  return 0;
}

/* The value of an option: "--opt=value", "--opt value", "-ovalue", "-o value".
 * *k is advanced past what was used. NULL (after an error message) if none. */
static const char *option_value(int argc, char **argv, int *k,
                                const char *name) {
  const char *arg = argv[*k];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) == 0 && arg[n] == '=') return arg + n + 1;
  if (name[1] != '-' && arg[n] != '\0') return arg + n; /* -ovalue */
  if (*k + 1 >= argc) {
    cli_usage_error("%s needs a value", name);
    return NULL;
  }
  return argv[++*k];
}

/* Does arg name this option, alone or with an attached value? */
static int is_option(const char *arg, const char *name) {
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return 0;
  if (arg[n] == '\0' || arg[n] == '=') return 1;
  return name[1] != '-'; /* short options take attached values */
}

static int parse_count(const char *value, const char *option, int64_t max,
                       int64_t *out) {
  int64_t v;
  if (parse_int(value, &v) != 0 || v < 1 || v > max) {
    cli_usage_error("%s expects an integer from 1 to %" PRId64 ", not '%s'",
                    option, max, value);
    return CLI_USAGE;
  }
  *out = v;
  return 0;
}

/* An argument that starts with '-' but reads as a number is an operand (as
 * argparse does): `parfill fill -1 ...`. */
static int looks_negative_number(const char *arg) {
  return arg[0] == '-' &&
         ((arg[1] >= '0' && arg[1] <= '9') || arg[1] == '.');
}

int cli_parse_fill(int argc, char **argv, cli_fill_args *args) {
  memset(args, 0, sizeof *args);
  args->dtype = PF_FLOAT64;
  args->schedule = PF_SCHEDULE_DYNAMIC;
  args->progress = -1;
  const char *shape_text = NULL;
  int only_operands = 0;
  for (int k = 0; k < argc; k++) {
    const char *arg = argv[k];
    const char *v;
    int rc = 0;
    if (only_operands || arg[0] != '-' || arg[1] == '\0' ||
        looks_negative_number(arg)) {
      if (args->expr != NULL) {
        cli_usage_error("unexpected argument '%s' (one EXPR only; quote it)",
                        arg);
        return CLI_USAGE;
      }
      args->expr = arg;
    } else if (strcmp(arg, "--") == 0) {
      only_operands = 1;
    } else if (is_option(arg, "--shape")) {
      if ((shape_text = option_value(argc, argv, &k, "--shape")) == NULL)
        return CLI_USAGE;
    } else if (is_option(arg, "--dtype")) {
      if ((v = option_value(argc, argv, &k, "--dtype")) == NULL)
        return CLI_USAGE;
      if (pf_dtype_parse(v, &args->dtype) != 0) {
        cli_usage_error("unknown or unsupported dtype '%s' (bool, int8..int64,"
                        " uint8..uint64, float16..float64, longdouble, "
                        "complex64, complex128, clongdouble)", v);
        return CLI_USAGE;
      }
    } else if (is_option(arg, "-D") || is_option(arg, "--define")) {
      if ((v = option_value(argc, argv, &k, arg[1] == 'D' ? "-D" : "--define"))
          == NULL)
        return CLI_USAGE;
      rc = parse_define(v, args);
    } else if (is_option(arg, "--workers")) {
      int64_t n = 0;
      if ((v = option_value(argc, argv, &k, "--workers")) == NULL)
        return CLI_USAGE;
      rc = parse_count(v, "--workers", 4096, &n);
      args->workers = (int)n;
    } else if (is_option(arg, "--schedule")) {
      if ((v = option_value(argc, argv, &k, "--schedule")) == NULL)
        return CLI_USAGE;
      if (pf_schedule_parse(v, &args->schedule) != 0) {
        cli_usage_error("--schedule expects static, dynamic or guided, not "
                        "'%s'", v);
        return CLI_USAGE;
      }
    } else if (is_option(arg, "--chunk")) {
      if ((v = option_value(argc, argv, &k, "--chunk")) == NULL)
        return CLI_USAGE;
      rc = parse_count(v, "--chunk", INT64_MAX / 2, &args->chunk);
    } else if (strcmp(arg, "--progress") == 0) {
      args->progress = 1;
    } else if (strcmp(arg, "--no-progress") == 0) {
      args->progress = 0;
    } else if (strcmp(arg, "--force") == 0 || strcmp(arg, "-f") == 0) {
      args->force = 1;
    } else if (is_option(arg, "-o") || is_option(arg, "--output")) {
      if ((v = option_value(argc, argv, &k, arg[1] == 'o' ? "-o" : "--output"))
          == NULL)
        return CLI_USAGE;
      if (*v == '\0') {
        cli_usage_error("the output file name is empty");
        return CLI_USAGE;
      }
      args->output = v;
    } else {
      cli_usage_error("unknown option '%s'", arg);
      return CLI_USAGE;
    }
    if (rc != 0) return rc;
  }
  if (args->expr == NULL) {
    cli_usage_error("no EXPR given");
    return CLI_USAGE;
  }
  if (shape_text == NULL) {
    cli_usage_error("--shape is required (e.g. --shape 20000x20000)");
    return CLI_USAGE;
  }
  char why[256];
  if (cli_parse_shape(shape_text, &args->ndim, args->shape, why, sizeof why)
      != 0) {
    cli_usage_error("--shape: %s", why);
    return CLI_USAGE;
  }
  /* NumPy's rule (numpy.empty, so numpy.load): the item size times every
   * nonzero axis length fits in int64 -- a zero axis does not excuse a huge
   * other one, or the file could not be loaded. */
  int64_t bytes = (int64_t)pf_dtype_size(args->dtype);
  for (int d = 0; d < args->ndim; d++)
    if (args->shape[d] != 0 &&
        __builtin_mul_overflow(bytes, args->shape[d], &bytes)) {
      cli_usage_error("--shape %s: 2**63 bytes or more of %s (NumPy counts "
                      "every nonzero axis, even in an empty array)",
                      shape_text, pf_dtype_name(args->dtype));
      return CLI_USAGE;
    }
  if (args->output == NULL) {
    cli_usage_error("-o OUT.npy is required");
    return CLI_USAGE;
  }
  return 0;
}
