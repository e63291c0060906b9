"""Results: the machine description, JSON files and small tables (markdown and RST)."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from _proc import HERE, cores_available

RESULTS = HERE / "results"
PACKAGES = (
    "telcoflow-trio",
    "trio",
    "trio-websocket",
    "wsproto",
    "hypercorn",
    "fastapi",
    "starlette",
    "teler",
    "telcoflow",
    "uvicorn",
    "uvloop",
    "websockets",
    "picows",
)


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": cores_available(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "commit": commit or None,
        "packages": versions,
    }


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def write_json(name: str, data: object) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def write_results(name: str, result: object, label: str = "") -> Path:
    """``results/NAME-STAMP.json`` and ``NAME-latest.json`` (what run.py's tables
    read); a side run (``label``) writes only ``NAME-LABEL-STAMP.json``.
    Returns the timestamped file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if label:
        return write_json(f"{name}-{label}-{stamp}.json", result)
    write_json(f"{name}-latest.json", result)
    return write_json(f"{name}-{stamp}.json", result)


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def verdict_table(rows: Sequence[tuple[str, str, bool | None]]) -> str:
    """The targets of the issue with what this run measured: ``target | measured | met``."""
    marks = {True: "yes", False: "**no**", None: "-"}
    return markdown_table(("target", "measured", "met"), [[t, m, marks[ok]] for t, m, ok in rows])


def noise_parts(
    spread_of: str, spreads: Sequence[float], steal: Sequence[float], foreign: Sequence[float]
) -> list[str]:
    """The clauses of a "Noise:" sentence: the repeats' spread (``spread_of`` names
    what spread), steal time and other processes' CPU; none for an empty list."""
    parts = []
    if spreads:
        parts.append(f"{spread_of}: median {median(spreads):.0f} %, largest {max(spreads):.0f} %")
    if steal:
        parts.append(
            f"steal time in the windows (100 % = one core): median {median(steal):.1f} %, "
            f"largest {max(steal):.1f} %"
        )
    if foreign:
        parts.append(
            f"other processes' CPU: median {median(foreign):.1f} %, largest {max(foreign):.1f} %"
        )
    return parts


def noisy(result: dict[str, Any], key: str, who: str) -> str:
    """A sentence naming the points measured while other processes were busy ("" if none)."""
    limit = result["settings"]["max_foreign"]
    found = [
        f"{p[who]} at {p['calls']} calls ({p['foreign_cpu_pct']:.0f} %)"
        for entry in result[key]
        for p in entry["points"]
        if (p.get("foreign_cpu_pct") or 0) > limit
    ]
    if not found:
        return ""
    retried = "after one repeat" if result["settings"].get("noisy_retries", 1) else "not repeated"
    return (
        f"Measured while other processes used more than {limit:g} % of a core "
        f"({retried}), so less reliable: " + ", ".join(found) + ".\n"
    )
