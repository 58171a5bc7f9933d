"""Command line: one module per group of verbs, each with a `register(subparsers)`.

Every error that is the input's or the environment's fault ends as one line on stderr,
`hipot VERB: error: ...`, with exit status 2 (1 for a failure of a run itself, 130 for Ctrl-C);
a traceback means a bug.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Verb groups, in the order `hipot --help` lists them.
VERB_MODULES = ["predict", "tasks", "properties", "kappa", "check", "bench", "train", "distill", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="hipot", description="HIENet-class interatomic potentials")
    parser.add_argument("--version", action="version", version=f"hipot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in VERB_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _interrupted(args: argparse.Namespace) -> str:
    """The line Ctrl-C prints: how far the command got and how to go on."""
    tally = getattr(args, "tally", None)
    how = getattr(args, "resume_hint", None)
    how = (how() if callable(how) else how) or "rerun the same command to start over (this command keeps no partial results)"
    if tally is not None and tally.total:
        return f"interrupted: {tally.done} of {tally.total} {tally.unit}(s) done; {how}"
    return f"interrupted; {how}"


class _CtrlCWatch:
    """Answers Ctrl-C at once even while the main thread is inside one long torch call (a large
    cell's backward pass can take minutes, and Python runs signal handlers only between two
    bytecodes): the C-level handler writes each signal to a pipe that this thread reads. The
    first Ctrl-C says the command stops when the current call returns (KeyboardInterrupt, then
    the usual message); a second one exits at once with the same message (partial results are
    written durably item by item, so nothing finished is lost)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.handled = None
        self._pipe: tuple[int, int] | None = None

    def __enter__(self) -> "_CtrlCWatch":
        import os
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            self._old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(r)
            os.close(w)
            return self
        self._pipe = (r, w)
        self.handled = threading.Event()
        threading.Thread(target=self._watch, args=(r,), daemon=True).start()
        return self

    def _watch(self, fd: int) -> None:
        import os
        import signal

        from ..distributed import world

        presses = 0
        note = getattr(self.args, "ctrl_c_note", "stopping when the current evaluation returns (Ctrl-C again: stop now)")
        try:
            while True:
                data = os.read(fd, 64)
                if not data:
                    return
                presses += data.count(bytes([signal.SIGINT]))
                if presses >= 2:
                    if world().is_main:
                        print(f"\nhipot {self.args.command}: {_interrupted(self.args)}", file=sys.stderr, flush=True)
                    os._exit(130)
                if presses == 1 and note and not self.handled.wait(1.0) and world().is_main:
                    print(f"\nhipot {self.args.command}: Ctrl-C: {note}", file=sys.stderr, flush=True)
        except OSError:
            return
        finally:
            os.close(fd)

    def __exit__(self, *exc) -> None:
        import os
        import signal

        if self._pipe is not None:
            signal.set_wakeup_fd(self._old)
            os.close(self._pipe[1])  # the watcher reads end of file and returns
            self._pipe = None


def _errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the input's or the environment's fault (one line, no traceback)."""
    from ..checkpoint import ModelFileError
    from ..optional import MissingDependency
    from ..tasks.common import InputFileError
    from ..training.data import DataError
    from ..types import StructureError
    from .common import CLIError

    return (CLIError, StructureError, ModelFileError, MissingDependency, InputFileError, DataError,
            FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "pass_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # verbs with their own option parser (bench) take these
    errors = _errors()
    watch = _CtrlCWatch(args)
    threads = None
    try:
        with watch:
            from .options import apply_threads

            threads = apply_threads(args)
            return args.func(args)
    except KeyboardInterrupt:
        from ..distributed import world

        if watch.handled is not None:
            watch.handled.set()
        if world().is_main:
            print(f"\nhipot {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except errors as e:
        code = getattr(e, "code", 2)
        print(f"hipot {args.command}: error: {e}", file=sys.stderr)
        return code if isinstance(code, int) else 2
    finally:
        if threads is not None:  # as it was, for a caller that runs more than one command (tests)
            import torch

            torch.set_num_threads(threads)
