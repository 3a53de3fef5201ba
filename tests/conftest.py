"""Test-session settings.

One torch thread: the suite's tensors are tiny, and on a 2-core machine that also runs
anything else, OpenMP threads waiting on each other made single ops up to 100x slower.
"""
import torch

torch.set_num_threads(1)
