"""crprop: steady-state 2D (r, z) cosmic-ray transport of a Z <= 14 nuclear network."""

from __future__ import annotations

__version__ = "0.1.0"
