"""The consistency audit every fault-injection test ends with (registry.maintenance.audit, what
`manage.py audit` prints for operators)."""

from __future__ import annotations

from registry.maintenance import audit


def assert_consistent(*, settled: bool = False) -> None:
    """Fail with every problem the audit finds; with settled, every job must have finished too."""
    problems = audit(settled=settled)
    assert not problems, "the hub is inconsistent:\n" + "\n".join(problems)
