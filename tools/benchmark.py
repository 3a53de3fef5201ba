#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.benchmark`: see rgs_detectron/cli/benchmark.py."""
import sys

from rgs_detectron.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
