"""Merge methods, one per module; `composer.registry` maps their names to them."""

from __future__ import annotations
