/* Coverage builds only (tools/coverage links every instrumented program and
 * the extension with -Wl,--wrap=_exit): a process team's worker leaves with
 * _exit(), which skips gcov's exit-time dump, so the code that ran only in
 * forked workers would be reported as never run. Dump the counters first.
 * (The children's counters were reset by gcov's fork wrapper, so nothing is
 * counted twice.) */
#include <unistd.h>

extern void __gcov_dump(void);
extern void __real__exit(int status) __attribute__((noreturn));
void __wrap__exit(int status) __attribute__((noreturn));

void __wrap__exit(int status) {
  __gcov_dump();
  __real__exit(status);
}
