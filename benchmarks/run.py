"""Run every benchmark in one go and publish the tables: ``nox -s bench [-- --quick]``.

Runs the bridge benchmark, then the client (media and control plane)
benchmark, writes ``results/*-latest.json``, ``results/latest.md`` (the tables
plus the machine), and replaces the results section of ``docs/performance.rst``.
Options after ``--only bridge`` or ``--only client`` go to that benchmark
(``python benchmarks/run.py --only bridge --bridges ours_trio,teler_uvloop``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

import bench_bridge
import bench_client
from _proc import HERE, cores_available
from _report import RESULTS, machine, rst_table, write_json

DOCS = HERE.parent / "docs" / "performance.rst"
START = ".. results-start"
END = ".. results-end"


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    return (
        f"{m['date']}; {m['cpu']}, {m['cores']} cores; Linux {m['kernel']}; Python {m['python']}; "
        f"commit {m['commit']}; trio {p['trio']}, trio-websocket {p['trio-websocket']}, "
        f"hypercorn {p['hypercorn']}, teler {p['teler']}, telcoflow {p['telcoflow']}, "
        f"uvicorn {p['uvicorn']}, uvloop {p['uvloop']}, websockets {p['websockets']}, "
        f"picows {p['picows']}"
    )


def noisy(result: dict[str, Any], key: str, who: str) -> str:
    """A sentence naming the points measured while other processes were busy."""
    limit = result["settings"]["max_foreign"]
    found = [
        f"{p[who]} at {p['calls']} calls ({p['foreign_cpu_pct']:.0f} %)"
        for entry in result[key]
        for p in entry["points"]
        if (p.get("foreign_cpu_pct") or 0) > limit
    ]
    if not found:
        return ""
    return (
        f"Measured while other processes used more than {limit:g} % of a core "
        "(after one repeat), so less reliable: " + ", ".join(found) + "."
    )


def verdicts(rows: list[tuple[str, str, bool | None]]) -> list[list[str]]:
    return [[t, m, {True: "yes", False: "**no**", None: "-"}[ok]] for t, m, ok in rows]


def rst(bridge: dict[str, Any] | None, client: dict[str, Any] | None, quick: bool) -> str:
    m = (bridge or client or {}).get("machine") or machine()
    out = [
        START,
        "",
        f"Measured {machine_line(m)}."
        + (" **Quick run** (``--quick``: one repeat, short windows)." if quick else ""),
        "",
    ]
    if bridge:
        s = bridge["settings"]
        out += [
            "Bridge",
            "~~~~~~",
            "",
            f"{s['rate']} Hz, 20 ms frames, {s['repeats']} run(s) of {s['duration']:g} s "
            "per point; "
            f"the CPU and p99 columns at N = {s['cpu_calls']} paced calls; idle memory with "
            f"{s['idle_calls']} connected calls. Baseline p99 (load generator straight "
            "to the echo): "
            + ", ".join(
                f"{ms:.2f} ms at {n}"
                for n, ms in sorted(bridge["baseline_p99_ms"].items(), key=lambda kv: int(kv[0]))
            )
            + ".",
            "",
            rst_table(bench_bridge.TABLE_HEADER, bench_bridge.table_rows(bridge)),
            noisy(bridge, "bridges", "bridge"),
            "",
            rst_table(("target", "measured", "met"), verdicts(bench_bridge.targets(bridge))),
        ]
    if client:
        s = client["settings"]
        out += [
            "Client media",
            "~~~~~~~~~~~~",
            "",
            f"Run {client['machine']['date']}. "
            f"8 kHz, {s['repeats']} run(s) of {s['duration']:g} s per point; per-call columns at "
            f"N = {s['cpu_calls']} calls; simulator transport {s['sim_transport']!r}.",
            "",
            rst_table(bench_client.MEDIA_HEADER, bench_client.media_rows(client)),
            noisy(client, "media", "agent"),
            "",
        ]
        if client["control"]:
            out += [
                "Control plane",
                "~~~~~~~~~~~~~",
                "",
                rst_table(bench_client.CONTROL_HEADER, bench_client.control_rows(client)),
            ]
        out += [rst_table(("target", "measured", "met"), verdicts(bench_client.targets(client)))]
    out += [END]
    return "\n".join(out)


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}-latest.json"
    return json.loads(path.read_text()) if path.exists() else None  # type: ignore[no-any-return]


def publish(text: str) -> None:
    doc = DOCS.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{DOCS} has no {START} ... {END} section")
    DOCS.write_text(pattern.sub(lambda _: text, doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, short windows (~6 min)")
    parser.add_argument("--only", choices=("bridge", "client"))
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/performance.rst"
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the tables from results/*-latest.json"
    )
    parser.add_argument(
        "--control-only",
        action="store_true",
        help="rerun only the control-plane part into results/client-latest.json",
    )
    args, rest = parser.parse_known_args()
    if cores_available() < 2:
        print("warning: fewer than 2 cores: the bridge and its load share a core", file=sys.stderr)
    started = time.monotonic()
    extra = (["--quick"] if args.quick else []) + rest
    if args.render or args.control_only:
        bridge, client = load("bridge"), load("client")
        if args.control_only and client is not None:
            client["control"] = bench_client.control_only(extra)
            write_json("client-latest.json", client)
    else:
        # One benchmark alone: the other's latest results stay in the tables.
        bridge = bench_bridge.main(extra) if args.only in (None, "bridge") else load("bridge")
        client = bench_client.main(extra) if args.only in (None, "client") else load("client")
    quick = args.quick or bool(bridge and bridge["settings"].get("quick"))
    text = rst(bridge, client, quick)
    RESULTS.mkdir(exist_ok=True)
    md = []
    if bridge:
        md.append(bench_bridge.markdown(bridge))
    if client:
        md.append(bench_client.markdown(client))
    m = (bridge or client or {})["machine"]
    (RESULTS / "latest.md").write_text(f"Measured {machine_line(m)}.\n\n" + "\n".join(md))
    if not args.no_docs:
        publish(text)
    print(
        f"done in {time.monotonic() - started:.0f} s; tables in {RESULTS / 'latest.md'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
