#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.export`: see rgs_detectron/cli/export.py."""
import sys

from rgs_detectron.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
