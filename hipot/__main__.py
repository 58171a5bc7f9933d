"""`python -m hipot` = the `hipot` command."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while torch is still importing: nothing started yet
    print("\nhipot: interrupted before starting", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
