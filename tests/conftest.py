"""Shared pytest set-up: one torch thread (tests use tiny models, for which thread start-up and
contention with other processes cost more than they gain) and an offline guard for hub clients."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import torch
    torch.set_num_threads(1)
except ImportError:  # the foundation tests run without torch too
    pass
