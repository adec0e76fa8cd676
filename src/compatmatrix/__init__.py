"""compatmatrix: which Python x torch x CUDA x vLLM x extras combinations really work."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
