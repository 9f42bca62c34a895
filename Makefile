# parfill -- `make` builds everything and a development virtual environment,
# `make test` runs every test, `make demo` runs the demo.

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
CC      ?= gcc
CLANG   ?= clang
PREFIX  ?= /usr/local

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -pthread -fPIC \
              -fopenmp-simd $(WARN) $(CFLAGS)
# libmvec: glibc's vectorised math (expression VM's float functions on x86-64).
LDLIBS  := -lm $(if $(filter x86_64,$(shell uname -m)),-lmvec) -lpthread

LIB_SRC := $(sort $(wildcard src/*.c))
LIB_HDR := include/parfill.h $(wildcard src/*.h)
LIB_OBJ := $(LIB_SRC:src/%.c=build/obj/%.o)
# cli/mpi.c is the MPI command's only (build/parfill-mpi, below).
CLI_SRC := $(filter-out cli/mpi.c,$(sort $(wildcard cli/*.c)))
MPICC   ?= mpicc
HAVE_MPI := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo yes)
CTEST_SRC := $(sort $(wildcard tests/c/test_*.c))
CTEST_BIN := $(CTEST_SRC:tests/c/%.c=build/tests/%)
EXT_SRC := $(sort $(wildcard python/_core/*.c python/_core/*.h))

.PHONY: all lib ext venv test test-c test-sanitize test-python \
        test-python-asan test-translate demo bench fuzz fuzz-replay adversarial \
        fuzz-translate install clean

all: lib $(if $(CLI_SRC),build/parfill) ext $(if $(CLI_SRC),$(VENV)/bin/parfill) \
     $(if $(HAVE_MPI),build/parfill-mpi $(VENV)/bin/parfill-mpi)

lib: build/libparfill.a build/libparfill.so

build/obj/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

build/libparfill.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/libparfill.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

# The command: cli/ uses only the public header; linked statically, so it
# runs without the library installed. On the venv's PATH too.
build/parfill: $(CLI_SRC) $(wildcard cli/*.h) build/libparfill.a include/parfill.h
	$(CC) $(CFLAGS_ALL) -Icli -o $@ $(CLI_SRC) build/libparfill.a $(LDLIBS)

$(VENV)/bin/parfill: build/parfill $(VENV)/.stamp
	ln -sf ../../build/parfill $@

# The MPI command (README "MPI"): the same sources and cli/mpi.c, built with
# the MPI compiler wrapper where one is installed. A second binary, so that
# `parfill` (and the wheel's copy) never needs libmpi at run time; it also
# runs without mpiexec, as one rank. `make mpi` installs Open MPI first when
# root and it is missing (make test does).
build/parfill-mpi: $(CLI_SRC) cli/mpi.c $(wildcard cli/*.h) build/libparfill.a include/parfill.h
	$(MPICC) $(CFLAGS_ALL) -DPF_CLI_MPI -Icli -o $@ $(CLI_SRC) cli/mpi.c build/libparfill.a $(LDLIBS)

$(VENV)/bin/parfill-mpi: build/parfill-mpi $(VENV)/.stamp
	ln -sf ../../build/parfill-mpi $@

.PHONY: mpi
mpi: lib venv
	@tools/ensure-system-deps mpi
	@$(MAKE) --no-print-directory build/parfill-mpi $(VENV)/bin/parfill-mpi

# ---- Python: virtual environment + in-place extension on the venv's path.
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements-dev.txt
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

ext: $(VENV)/.ext-stamp
$(VENV)/.ext-stamp: $(VENV)/.stamp $(LIB_SRC) $(LIB_HDR) $(EXT_SRC) setup.py pyproject.toml
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	@if [ -x build/parfill ]; then ln -sf ../../build/parfill $(VENV)/bin/parfill; fi
	touch $@

# ---- Tests
test: all typecheck test-c test-sanitize test-python test-translate test-python-asan

build/tests/%: tests/c/%.c $(LIB_SRC) $(LIB_HDR) $(wildcard tests/c/*.h)
	@tools/ensure-system-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Itests/c -o $@ $< $(LIB_SRC) $(LDLIBS) -lcmocka

test-c: $(CTEST_BIN)
	@set -e; for t in $(CTEST_BIN); do echo "== $$t"; $$t; done

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer
test-sanitize:
	@tools/ensure-system-deps
	@mkdir -p build/asan build/tsan
	@set -e; for t in $(CTEST_SRC); do n=$$(basename $$t .c); \
	  $(CC) $(CFLAGS_ALL) $(SAN_FLAGS) -fsanitize=address,undefined \
	    -fno-sanitize-recover=all -Itests/c -o build/asan/$$n $$t $(LIB_SRC) $(LDLIBS) -lcmocka; \
	  echo "== asan+ubsan $$n"; build/asan/$$n; \
	  $(CC) $(CFLAGS_ALL) $(SAN_FLAGS) -fsanitize=thread \
	    -Itests/c -o build/tsan/$$n $$t $(LIB_SRC) $(LDLIBS) -lcmocka; \
	  echo "== tsan $$n"; TSAN_OPTIONS=halt_on_error=1 build/tsan/$$n; \
	done
	@$(MAKE) --no-print-directory fuzz-replay

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
fuzz-replay:
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  mkdir -p build/fuzz; \
	  $(CC) $(CFLAGS_ALL) $(SAN_FLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -o build/fuzz/$$n-replay $$f tests/fuzz/replay_main.c $(LIB_SRC) $(LDLIBS); \
	  echo "== replay $$n"; build/fuzz/$$n-replay tests/fuzz/corpus/$${n#fuzz_}; \
	done

# libFuzzer builds (clang); run e.g. `build/fuzz/fuzz_expr -max_total_time=600 tests/fuzz/corpus/expr`
fuzz:
	@tools/ensure-system-deps
	@mkdir -p build/fuzz
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  $(CLANG) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -pthread \
	    -fsanitize=fuzzer,address,undefined -o build/fuzz/$$n $$f $(LIB_SRC) $(LDLIBS); \
	  echo "built build/fuzz/$$n"; done

test-python: ext mpi
	$(PY) -m pytest -q tests/python

# The translation suite under every CPython >= 3.11 found (bytecode differs
# between versions): the front end's tests, and populate(translate=) with the
# extension built for each version under build/ (tools/run-translate-tests).
# test-python runs both, and the bounded fuzzer, under the venv's Python.
test-translate: ext
	tools/run-translate-tests

# A long run of the translator's differential fuzzer
# (tests/python/translate_fuzz.py; make test runs a bounded one); prints its
# counts. FUZZ_SECONDS=600 by default; SEED= to reproduce a run.
FUZZ_SECONDS ?= 600
fuzz-translate: all
	$(PY) tests/python/translate_fuzz.py --seconds $(FUZZ_SECONDS) $(if $(SEED),--seed $(SEED))

# The package's annotations, strictly ([tool.mypy] in pyproject.toml).
.PHONY: typecheck
typecheck: venv
	$(PY) -m mypy python/parfill

# The Python tests against an ASan+UBSan build of the extension (a copy of the
# package in build/asan-py shadows the development install). Leak detection is
# off: CPython keeps interned objects alive at exit on purpose.
ASAN_PY := build/asan-py
test-python-asan: ext
	@rm -rf $(ASAN_PY) && mkdir -p $(ASAN_PY)
	cp -r python/parfill $(ASAN_PY)/ && rm -f $(ASAN_PY)/parfill/*.so
	$(CC) -shared $(CFLAGS_ALL) $(SAN_FLAGS) -Wno-error -fsanitize=address,undefined \
	  -fno-sanitize-recover=all -Ipython/_core \
	  -DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION -DNPY_TARGET_VERSION=NPY_2_0_API_VERSION \
	  -I$$($(PY) -c "import numpy; print(numpy.get_include())") \
	  -I$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])") \
	  -o $(ASAN_PY)/parfill/_core$$($(PY) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))") \
	  $(sort $(wildcard python/_core/*.c)) $(LIB_SRC) $(LDLIBS)
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so):$$($(CC) -print-file-name=libubsan.so) \
	  ASAN_OPTIONS=detect_leaks=0:handle_segv=0 PYTHONPATH=$(ASAN_PY) \
	  $(PY) -m pytest -q -p no:cacheprovider tests/python/test_populate.py \
	  tests/python/test_failures.py tests/python/test_out.py \
	  tests/python/test_arguments.py $(wildcard tests/python/test_expr.py) \
	  tests/python/test_pyvm.py

# A long adversarial run (tests/python/adversarial.py); `make test` runs a
# bounded one. ADVERSARIAL_SECONDS=600 by default; SEED= to reproduce a run.
ADVERSARIAL_SECONDS ?= 600
adversarial: all
	$(PY) tests/python/adversarial.py --seconds $(ADVERSARIAL_SECONDS) $(if $(SEED),--seed $(SEED))

# Line and branch coverage of src/ and python/_core/ by the C tests, the fuzz
# corpora and the whole Python suite, built with gcov into build/cov/ (the
# normal build and .venv's extension are untouched); tables in
# build/cov/coverage.txt, HTML in build/cov/html/ (tools/coverage says how).
.PHONY: coverage
coverage: all
	CC="$(CC)" CFLAGS="$(filter-out -O%,$(CFLAGS_ALL))" LDLIBS="$(LDLIBS)" PY="$(PY)" tools/coverage

demo: all
	$(PY) -m parfill demo

# Benchmarks run from the checkout (benchmarks/ is not installed):
# `make bench SUITE=expr ARGS="--quick"`; SUITE defaults to "python".
bench: all
	$(PY) -m benchmarks $(SUITE) $(ARGS)

install: lib $(if $(CLI_SRC),build/parfill)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/parfill.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 build/libparfill.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 build/libparfill.so $(DESTDIR)$(PREFIX)/lib/
	@if [ -x build/parfill ]; then install -m 755 build/parfill $(DESTDIR)$(PREFIX)/bin/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' \
	  -e 's|^Libs.private:.*|Libs.private: $(LDLIBS)|' parfill.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/parfill.pc

clean:
	rm -rf build python/parfill/*.so $(VENV)/.ext-stamp
