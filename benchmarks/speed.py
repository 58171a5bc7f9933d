"""Speed benchmark; the same as `hipot bench` (see hipot/bench/speed.py for the options)."""
import sys

from hipot.bench.speed import main

sys.exit(main())
