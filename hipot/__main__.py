"""`python -m hipot` = the `hipot` command."""
import sys


def _run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while torch is still importing: nothing started yet
        print("\nhipot: interrupted before starting", file=sys.stderr)
        return 130
    return main()


# guarded: worker processes started with 'spawn' (hipot.distill.workers) import this module as
# __mp_main__, and must not run the command again
if __name__ == "__main__":
    sys.exit(_run())
