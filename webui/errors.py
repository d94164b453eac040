"""Errors a user can cause, for webui's modules to import from their own package.

Declared once, in `loaders.errors`: backends raise them too, and loaders may not
import webui."""
from __future__ import annotations

from loaders.errors import ErrorKind, UserError

__all__ = ["ErrorKind", "UserError"]
