"""Run every benchmark in one go and publish the tables: ``nox -s bench [-- --quick]``.

Runs the bridge benchmark at each of ``--rates`` (8 and 16 kHz), then the
client (media and control plane) benchmark, then the scale benchmark
(``telcoflow-trio run --workers 4``), then the outbound-call benchmark
(ours against the official SDK), writes ``results/*-latest.json``,
``results/latest.md`` (the tables plus the machine), and replaces the results
section of ``docs/performance.md`` with the same text. Options after
``--only bridge``, ``--only client``, ``--only scale`` or ``--only outbound`` go
to that benchmark
(``python benchmarks/run.py --only bridge --rates 8000 --bridges ours_trio,teler_uvloop``).
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
import bench_outbound
import bench_scale
from _proc import HERE, cores_available
from _report import RESULTS, write_json

DOCS = HERE.parent / "docs" / "performance.md"
START = "<!-- results-start -->"
END = "<!-- results-end -->"


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    return (
        f"{m['date']}; {m['cpu']}, {m['cores']} cores; Linux {m['kernel']}; Python {m['python']}; "
        f"commit {m['commit']}; trio {p['trio']}, trio-websocket {p['trio-websocket']}, "
        f"hypercorn {p['hypercorn']}, teler {p['teler']}, telcoflow {p['telcoflow']}, "
        f"uvicorn {p['uvicorn']}, uvloop {p['uvloop']}, websockets {p['websockets']}, "
        f"picows {p['picows']}"
    )


def render(
    bridges: list[dict[str, Any]],
    client: dict[str, Any] | None,
    scale: dict[str, Any] | None,
    outbound: dict[str, Any] | None = None,
) -> str:
    """The results section: the machine, then every table with its targets."""
    first = next(r for r in [*bridges, client, scale, outbound] if r)
    quick = any(r["settings"].get("quick") for r in [*bridges, client, scale, outbound] if r)
    parts = [
        f"Measured {machine_line(first['machine'])}."
        + (
            " **Quick run** (`--quick`: short windows, one capacity probe per row)."
            if quick
            else ""
        ),
        "",
    ]
    parts += [bench_bridge.markdown(r) for r in bridges]
    if client:
        parts.append(bench_client.markdown(client))
    if scale:
        parts.append(bench_scale.markdown(scale))
    if outbound:
        parts.append(bench_outbound.markdown(outbound))
    return "\n".join(parts)


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}-latest.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("benchmark") == "bridge" and data.get("format") != bench_bridge.FORMAT:
        print(f"warning: {path} is from an older harness; left out of the tables", file=sys.stderr)
        return None
    return data


def publish(text: str) -> None:
    doc = DOCS.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{DOCS} has no {START} ... {END} section")
    DOCS.write_text(pattern.sub(lambda _: f"{START}\n\n{text}\n{END}", doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="every row briefly (the bridge alone: < 3 min)"
    )
    parser.add_argument("--only", choices=("bridge", "client", "scale", "outbound"))
    parser.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        help="sample rates of the bridge benchmark (default: 8000,16000; --quick: 8000)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs page")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the tables from results/*-latest.json"
    )
    parser.add_argument(
        "--control-only",
        action="store_true",
        help="rerun only the control-plane part into results/client-latest.json",
    )
    args, rest = parser.parse_known_args()
    rates = args.rates or ([8000] if args.quick else [8000, 16000])
    if cores_available() < 2:
        print("warning: fewer than 2 cores: the bridge and its load share a core", file=sys.stderr)
    started = time.monotonic()
    extra = (["--quick"] if args.quick else []) + rest
    run_bridge = not (args.render or args.control_only) and args.only in (None, "bridge")
    run_client = not (args.render or args.control_only) and args.only in (None, "client")
    run_scale = not (args.render or args.control_only) and args.only in (None, "scale")
    run_outbound = not (args.render or args.control_only) and args.only in (None, "outbound")
    # What is not rerun keeps its latest results in the tables.
    bridges = [
        bench_bridge.main([*extra, "--rate", str(rate)]) if run_bridge else load(f"bridge-{rate}")
        for rate in rates
    ]
    client = bench_client.main(extra) if run_client else load("client")
    scale = bench_scale.main(extra) if run_scale else load("scale")
    outbound = bench_outbound.main(extra) if run_outbound else load("outbound")
    if args.control_only and client is not None:
        client["control"] = bench_client.control_only(extra)
        write_json("client-latest.json", client)
    text = render([b for b in bridges if b], client, scale, outbound)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text)
    if not args.no_docs:
        publish(text)
    print(
        f"done in {time.monotonic() - started:.0f} s; tables in {RESULTS / 'latest.md'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
