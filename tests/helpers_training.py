"""Settings shared by the training tests that need a real, but tiny, network."""

from __future__ import annotations

TINY_CRNET = {"n_bins": 84, "n_channels": 8, "n_outputs": 10, "conv_channels": [4], "kernel_size": 3,
              "dense_units": [8], "dropout": 0.0}
"""Smallest crnet network: these tests exercise the checkpoint's bookkeeping, not the learning."""
