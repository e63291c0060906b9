"""The capacity search both benchmarks use: bracket the knee, then bisect it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Point = dict[str, Any]


def _round5(n: float) -> int:
    return max(5, round(n / 5) * 5)


def find_max(
    first: Point,
    probe: Callable[[int], Point],
    *,
    max_probes: int,
    resolution: float,
    cpu_key: str,
    knee_cpu_pct: float = 75.0,
) -> tuple[int | None, int | None, list[Point]]:
    """``(most calls sustained, fewest calls failed, the points)`` within ``max_probes`` probes.

    ``first`` (already measured) seeds the search: the first probe goes where its
    CPU says the process reaches ``knee_cpu_pct`` of a core, which is about where
    the latency knee is on every stack measured so far. Then it steps by 25 %
    until the knee is bracketed, and halves the bracket until it is narrower than
    ``resolution`` (a fraction) or 5 calls.
    """
    points = [first]
    good: int | None = first["calls"] if first["sustained"] else None
    bad: int | None = None if first["sustained"] else first["calls"]
    cpu = first.get(cpu_key) or 0.0
    estimate = _round5(first["calls"] * knee_cpu_pct / cpu) if cpu > 0 else first["calls"] * 2
    n = max(estimate, first["calls"] + 5) if good else min(estimate, _round5(first["calls"] * 0.6))
    for _ in range(max_probes):
        if good is not None and bad is not None:
            if bad - good <= max(5, resolution * good):
                break
            if not good < n < bad:
                n = (good + bad) // 2
        elif good is not None and n <= good:
            n = _round5(good * 1.25)
        elif bad is not None and n >= bad:
            n = _round5(bad * 0.75)
        if n <= 0 or any(p["calls"] == n for p in points):
            break
        point = probe(n)
        points.append(point)
        if point["sustained"]:
            good = n if good is None else max(good, n)
            n = (n + bad) // 2 if bad is not None else _round5(n * 1.25)
        else:
            bad = n if bad is None else min(bad, n)
            n = (good + n) // 2 if good is not None else _round5(n * 0.75)
    return good, bad, points
