#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.demo`: see rgs_detectron/cli/demo.py."""
import sys

from rgs_detectron.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
