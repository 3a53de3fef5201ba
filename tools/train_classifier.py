#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.train_classifier`: see rgs_detectron/cli/train_classifier.py."""
import sys

from rgs_detectron.cli.train_classifier import main

if __name__ == "__main__":
    sys.exit(main())
