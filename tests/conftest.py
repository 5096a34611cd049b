from __future__ import annotations

# Fixtures shared across test packages live in tests/plugins/ so each area owns its own file.
pytest_plugins = [
    "tests.plugins.seaweed",
    "tests.plugins.hub",
    "tests.plugins.workers",
    "tests.plugins.adapters_library",
]
