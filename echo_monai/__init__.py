"""echo_monai: MONAI bundles and a shared package for synthetic ultrasound generation."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
