"""How many cases the Hypothesis tests generate, and how reproducibly.

Under CI every property runs its full budget, derandomized (the same cases on
every run, no example database), so a red build can be replayed exactly. On a
laptop a tenth of the budget runs with fresh random cases each time, and
failures are remembered in ``.hypothesis/`` and replayed first.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from .conftest import IN_CI


def budget(ci: int) -> settings:
    """Settings that generate ``ci`` cases under CI and ``ci // 10`` (at least 20) elsewhere."""
    return settings(
        max_examples=ci if IN_CI else max(ci // 10, 20),
        derandomize=IN_CI,
        database=None if IN_CI else settings.default.database,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
