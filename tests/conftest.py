"""Test-session settings.

One torch thread: the suite's tensors are tiny, and on a 2-core machine that also runs
anything else, OpenMP threads waiting on each other made single ops up to 100x slower
(1.5 s instead of 15 ms for a depth-26 forward). Set here, once for every test file.
"""
import logging

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _console_loggers_of_this_test_only():
    """Detectron2's ``setup_logger`` is cached and binds its console handler to the ``sys.stdout`` of the
    first caller: in-process command lines run by one test would log into the closed capture of an earlier
    one ("--- Logging error ---"). Each test starts with no console handler of ours or Detectron2's."""
    yield
    from detectron2.utils import logger as d2_logger

    d2_logger.setup_logger.cache_clear()
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for log in [logging.getLogger(), *loggers]:
        for handler in list(log.handlers):
            if type(handler) is logging.StreamHandler or type(handler).__module__.startswith("detectron2"):
                log.removeHandler(handler)
