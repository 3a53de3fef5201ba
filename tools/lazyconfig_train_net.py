#!/usr/bin/env python
"""Same as `python -m rgs_detectron.cli.lazy_train_net`: see rgs_detectron/cli/lazy_train_net.py."""
import sys

from rgs_detectron.cli.lazy_train_net import main

if __name__ == "__main__":
    sys.exit(main())
