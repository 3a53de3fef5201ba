#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.analyze`: see rgs_detectron/cli/analyze.py."""
import sys

from rgs_detectron.cli.analyze import main

if __name__ == "__main__":
    sys.exit(main())
