"""How many intra-op threads torch uses in the app's process (and in the builders of its precomputed
presets, so a preset equals a live run bit for bit: a different thread count sums in another order)."""

import os

import torch


def app_threads() -> int:
    """NESTED_TORCH_THREADS, default 1: every session runs in the one server process, and torch's default
    (a thread per core) oversubscribes the CPU as soon as two sessions compute at once (measured: 524
    tokens/s streaming on 1 thread, 15 on 2 while another job ran). Several cores serve a room as several
    processes (deploy/)."""
    raw = os.environ.get("NESTED_TORCH_THREADS", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) > 0 else 1


def use_app_threads() -> None:
    torch.set_num_threads(app_threads())
