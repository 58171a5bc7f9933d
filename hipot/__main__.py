"""`python -m hipot` = the `hipot` command."""
import sys

from .cli import main

sys.exit(main())
