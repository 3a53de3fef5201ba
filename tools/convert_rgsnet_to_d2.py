#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.convert`: see rgs_detectron/cli/convert.py."""
import sys

from rgs_detectron.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
