"""Builds parfill._core and the ``parfill`` command.

The extension compiles libparfill's sources in. The command (``cli/*.c``
linked statically with libparfill's objects, the Makefile's ``build/parfill``)
is built by ``build_scripts`` and travels in the wheel as a script
(``parfill-*.data/scripts/parfill``), as binary-tool wheels do, so ``pip install``
puts ``parfill`` on the environment's PATH for users who never run ``make``.
"""
import glob
import os
import platform
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy
from setuptools import Extension, setup

# After setuptools: its own distutils (setuptools has no build_scripts of its own).
from distutils.command.build_scripts import build_scripts  # noqa: E402  isort: skip

# libmvec: glibc's vectorised math, used by the expression VM on x86-64.
MATH_LIBS = ["m"] + (["mvec"] if platform.machine() == "x86_64" else [])

core = Extension(
    "parfill._core",
    sources=sorted(glob.glob("python/_core/*.c")) + sorted(glob.glob("src/*.c")),
    include_dirs=["include", "src", "python/_core", numpy.get_include()],
    define_macros=[("_GNU_SOURCE", None), ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
                   ("NPY_TARGET_VERSION", "NPY_2_0_API_VERSION")],
    # -fno-wrapv undoes CPython's -fwrapv (sysconfig CFLAGS), under which
    # signed int lane indices may wrap, so GCC turns the VMs' dense lane
    # loops into gathers and scatters (about 10x slower; the library's own
    # build and tests have no -fwrapv: no code here relies on wrapping).
    extra_compile_args=["-std=c11", "-O2", "-fno-wrapv", "-fopenmp-simd",
                        "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
    libraries=MATH_LIBS,
)

# The Makefile's CFLAGS_ALL for build/parfill (CC and CFLAGS from the environment
# as there), less -Werror: a newer compiler's new warning must not fail an install.
CLI_CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Iinclude", "-Isrc", "-Icli", "-pthread",
              "-fPIC", "-fopenmp-simd", "-Wall", "-Wextra", "-Wshadow",
              "-Wstrict-prototypes", "-Wno-unused-parameter"]
CLI_LDLIBS = [f"-l{lib}" for lib in MATH_LIBS] + ["-lpthread"]


class build_cli(build_scripts):
    """Compiles the ``parfill`` command into the scripts build directory.

    setuptools runs this command only when the distribution has scripts, hence
    ``scripts=["parfill"]`` below: a name, not a file; nothing is copied.
    Objects are kept in ``build/cli-objects`` and recompiled only when their
    source, a header or the flags changed, so the editable install that every
    ``make`` refreshes costs a link, not a rebuild.
    """

    editable_mode = False  # set by setuptools for `pip install -e`; built the same

    @staticmethod
    def _sources():
        # cli/mpi.c belongs to the MPI command only (Makefile: build/parfill-mpi).
        cli = [c for c in sorted(glob.glob("cli/*.c")) if c != "cli/mpi.c"]
        return cli + sorted(glob.glob("src/*.c"))

    @staticmethod
    def _headers():
        return (["include/parfill.h"] + sorted(glob.glob("src/*.h"))
                + sorted(glob.glob("cli/*.h")))

    def get_source_files(self):
        return self._sources() + self._headers()

    def get_outputs(self):
        return [os.path.join(self.build_dir, "parfill")]

    def run(self):
        cc = shlex.split(os.environ.get("CC") or ("gcc" if shutil.which("gcc") else "cc"))
        cflags = CLI_CFLAGS + shlex.split(os.environ.get("CFLAGS", "-O2 -g"))
        objdir = os.path.join("build", "cli-objects")
        os.makedirs(objdir, exist_ok=True)
        # A change of compiler or flags makes every object stale.
        stamp = os.path.join(objdir, "flags")
        flags_line = shlex.join(cc + cflags) + "\n"
        old_flags = open(stamp).read() if os.path.exists(stamp) else ""
        newest_header = max(os.path.getmtime(h) for h in self._headers())

        def stale(src, obj):
            return (old_flags != flags_line or not os.path.exists(obj)
                    or os.path.getmtime(obj) < max(os.path.getmtime(src), newest_header))

        # cli/ and src/ share no file names (cli/main.c, src/fill.c...), but keep
        # the directory in the object's name so they never could collide.
        jobs = [(src, os.path.join(objdir, src.replace("/", "_")[:-2] + ".o"))
                for src in self._sources()]
        todo = [(src, obj) for src, obj in jobs if stale(src, obj)]

        def compile_one(job):
            # Through a temporary name: a wheel build and a `make` in the same
            # tree may compile the same object at once; each sees a whole one.
            src, obj = job
            tmp = f"{obj}.{os.getpid()}.tmp"
            subprocess.run(cc + cflags + ["-c", src, "-o", tmp], check=True)
            os.replace(tmp, obj)

        if todo:
            with open(stamp, "w") as f:  # rewritten below only when all succeeded
                f.write("")
            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                list(pool.map(compile_one, todo))
            with open(stamp, "w") as f:
                f.write(flags_line)
        os.makedirs(self.build_dir, exist_ok=True)
        out = self.get_outputs()[0]
        subprocess.run(cc + cflags + ["-o", out] + [obj for _, obj in jobs] + CLI_LDLIBS,
                       check=True)
        os.chmod(out, 0o755)


setup(ext_modules=[core], scripts=["parfill"], cmdclass={"build_scripts": build_cli})
