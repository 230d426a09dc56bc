"""medssl: self-supervised pretraining of image encoders on medical images.

The public API grows with the package; see docs/api.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from medssl.errors import ConfigError, DataError, MedSSLError, RegistryError  # noqa: E402

__all__ = ["__version__", "MedSSLError", "DataError", "ConfigError", "RegistryError"]
