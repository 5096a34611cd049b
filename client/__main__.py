"""`python -m client ...` is the `ahub` command."""

from __future__ import annotations

from client.cli import main

raise SystemExit(main())
