"""Profile one bridge under paced load with py-spy (``--function``, raw stacks + a summary).

Usage: ``python profile_bridge.py BRIDGE [--calls N] [--seconds S]``; writes
``results/profiles/BRIDGE.txt`` (collapsed stacks) and prints the top functions by
self time and by inclusive time. py-spy's self-time attribution leans toward code
in system calls (perf-anchors.md): read it for structure, not exact percentages.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _proc import HERE
from bench_bridge import BRIDGES, LOAD_CORE, Bench


def summarize(path: str, top: int = 25) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "-- self --"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    out += ["-- inclusive --"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bridge", choices=sorted(BRIDGES))
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=int, default=250)
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed (pip install py-spy)")
    settings = argparse.Namespace(
        rate=8000,
        warmup=1.0,
        duration=args.seconds + 2,
        drain=3.0,
        max_foreign=8.0,
        noisy_retries=0,
        quiet_wait=0.0,
    )
    bench = Bench(settings)
    try:
        bridge, url = bench.start_bridge(args.bridge)
        gen = bench.children.start(
            bench.loadgen_argv(url, args.calls), LOAD_CORE, stdout=subprocess.PIPE
        )
        assert gen.stdout is not None
        for raw in gen.stdout:
            if raw.startswith(b"WINDOW_START"):
                break
        out = HERE / "results" / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{args.bridge}.txt"
        subprocess.run(
            [
                "py-spy",
                "record",
                "--pid",
                str(bridge.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                str(args.rate),
                "--function",
                "--format",
                "raw",
                "--output",
                str(path),
                "--nonblocking",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.1)
        print(summarize(str(path)))
    finally:
        bench.children.stop_all()


if __name__ == "__main__":
    main()
