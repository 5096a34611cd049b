"""Upload sessions for resumable, presigned multipart pushes (see registry/uploads.py)."""

from __future__ import annotations
