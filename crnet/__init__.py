"""crnet: inversion of cosmic-ray propagation with neural networks, on top of the crprop solver."""

from __future__ import annotations

__version__ = "0.1.0"
