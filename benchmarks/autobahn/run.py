"""RFC 6455 conformance of our WebSocket, measured with Autobahn|Testsuite: ``nox -s autobahn``.

Never part of the tests or CI: it needs Python 2.7 and takes minutes. It

1. makes a Python 2.7 virtualenv with ``autobahntestsuite==0.8.2`` and the pins of
   ``requirements-py27.txt`` (once; ``--venv`` says where, ``--python2`` with what);
2. server side: serves our echo (``telcoflow_trio.ws.serve_websocket``) on 127.0.0.1,
   plain and TLS (a trustme certificate), and runs ``wstest -m fuzzingclient`` on it;
3. client side: runs ``wstest -m fuzzingserver`` on 127.0.0.1, plain and TLS, and our
   client (``telcoflow_trio.ws.open_websocket_url``) through every case
   (``getCaseCount``, ``runCase``, ``updateReports``);
4. reads wstest's JSON reports and writes ``results/autobahn-latest.json`` and
   ``results/autobahn-latest.md``: the count of each verdict per run and every case
   that is not OK.

Every case runs but compression (12.*, 13.*: no extension is ever negotiated);
``--cases '6.4.*,9.1.*'`` narrows them, ``--only server-plain,client-tls`` picks runs.
wstest's HTML and JSON reports stay in ``--reports`` (default ``build/autobahn``).
Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import trio

# The checkout this file is in is the one measured, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _proc import free_port
from _report import RESULTS, machine, markdown_table, write_json
from _tls import Certs, make_certs

from telcoflow_trio.exceptions import WSSError
from telcoflow_trio.ws import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REQUIREMENTS = HERE / "requirements-py27.txt"
AGENT = "telcoflow_trio"
RUNS = ("server-plain", "server-tls", "client-plain", "client-tls")
EXCLUDE = ["12.*", "13.*"]  # permessage-deflate: never negotiated
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
MAX_MESSAGE = 64 << 20  # the 9.* cases send messages of up to 16 MiB
CASE_TIMEOUT = 120.0  # one client case, at most (wstest's own case timeouts are shorter)
RUN_TIMEOUT = 1800.0  # one wstest run, at most


# -- the Python 2.7 side ----------------------------------------------------------------


def find_python2() -> str | None:
    """A Python 2.7 that runs: ``$AUTOBAHN_PYTHON2``, ``python2.7`` on PATH, or a pyenv 2.7.

    Each is tried (a pyenv shim is on PATH even where its version is not selected).
    """
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python")))
    candidates = [os.environ.get("AUTOBAHN_PYTHON2"), shutil.which("python2.7"), *pyenv]
    for name in candidates:
        if not name:
            continue
        try:
            found = subprocess.run(
                [name, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.stdout.strip() == "True":
            return name
    return None


def ensure_wstest(venv: Path, python2: str) -> Path:
    """``wstest`` in ``venv``, made with ``python2`` and the pins unless already there."""
    wstest = venv / "bin" / "wstest"
    stamp = venv / REQUIREMENTS.name
    wanted = REQUIREMENTS.read_text()
    if wstest.exists() and stamp.exists() and stamp.read_text() == wanted:
        return wstest
    # virtualenv < 20.22 still makes Python 2.7 environments (nox -s autobahn installs it).
    subprocess.run(
        [sys.executable, "-m", "virtualenv", "-q", "-p", python2, str(venv)], check=True
    )
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return wstest


# -- our side ---------------------------------------------------------------------------


async def echo(ws: WebSocketConnection) -> None:
    """Send every message back until the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send_message(await ws.get_message())


async def accept_and_echo(request: WebSocketRequest) -> None:
    await echo(await request.accept())


async def run_client(url: str, ssl_context: ssl.SSLContext | None, log: list[str]) -> None:
    """Our client through every case of the fuzzing server at ``url``."""

    def opening(path: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        return open_websocket_url(url + path, ssl_context, max_message_size=MAX_MESSAGE)

    async with opening("/getCaseCount") as ws:
        count = int(await ws.get_message())
    for case in range(1, count + 1):
        with trio.move_on_after(CASE_TIMEOUT) as scope:
            try:
                async with opening(f"/runCase?case={case}&agent={AGENT}") as ws:
                    await echo(ws)
            except WSSError as exc:  # the case may well refuse or break the connection
                log.append(f"case {case}: {type(exc).__name__}: {exc}")
        if scope.cancelled_caught:
            log.append(f"case {case}: still running after {CASE_TIMEOUT} s, abandoned")
    async with opening(f"/updateReports?agent={AGENT}") as ws:
        with contextlib.suppress(ConnectionClosed):
            await ws.get_message()  # the server closes once the reports are written


# -- the runs ---------------------------------------------------------------------------


def server_context(certs: Certs) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.certfile, certs.keyfile)
    return ctx


async def wait_listening(port: int) -> None:
    """Return once something accepts TCP on 127.0.0.1:``port``; the caller bounds it."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.1)
            continue
        await stream.aclose()
        return


async def one_run(
    name: str, wstest: Path, certs: Certs, cases: Sequence[str], reports: Path
) -> dict[str, Any]:
    """Run ``name`` (``server-plain``...): wstest against us; returns its summary."""
    side, kind = name.split("-")
    tls = kind == "tls"
    workdir = reports / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    port = free_port()
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"
    spec: dict[str, Any] = {"outdir": str(workdir), "cases": list(cases)}
    spec["exclude-cases"] = EXCLUDE
    spec["exclude-agent-cases"] = {}
    client_log: list[str] = []
    started = time.monotonic()
    with (workdir / "wstest.log").open("wb") as out, trio.fail_after(RUN_TIMEOUT):
        if side == "server":
            spec["servers"] = [{"agent": AGENT, "url": url}]
            (workdir / "spec.json").write_text(json.dumps(spec, indent=1))
            async with trio.open_nursery() as nursery:
                context = server_context(certs) if tls else None
                await nursery.start(
                    partial(
                        serve_websocket,
                        accept_and_echo,
                        "127.0.0.1",
                        port,
                        context,
                        max_message_size=MAX_MESSAGE,
                    )
                )
                command = [str(wstest), "-m", "fuzzingclient", "-s", "spec.json"]
                done = await trio.run_process(
                    command, cwd=workdir, stdout=out, stderr=out, check=False
                )
                nursery.cancel_scope.cancel()
        else:
            spec["url"] = url
            if tls:  # wstest 0.8.2 reads these from the spec only (it ignores -c and -k)
                spec.update(cert=certs.certfile, key=certs.keyfile)
            (workdir / "spec.json").write_text(json.dumps(spec, indent=1))
            command = [str(wstest), "-m", "fuzzingserver", "-s", "spec.json", "-u", "0"]
            async with trio.open_nursery() as nursery:
                done = await nursery.start(
                    partial(
                        trio.run_process, command, cwd=workdir, stdout=out, stderr=out, check=False
                    )
                )
                with trio.fail_after(30):
                    await wait_listening(port)
                client_context = ssl.create_default_context(cafile=certs.cafile) if tls else None
                await run_client(url, client_context, client_log)
                nursery.cancel_scope.cancel()
    seconds = time.monotonic() - started
    index = workdir / "index.json"
    if not index.exists():
        raise RuntimeError(
            f"{name}: wstest wrote no report (exit {done.returncode}); see {workdir}/wstest.log"
        )
    summary = summarize(json.loads(index.read_text())[AGENT], workdir)
    summary.update(run=name, url=url, seconds=round(seconds, 1), client_log=client_log)
    return summary


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def summarize(results: dict[str, dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """Verdict counts, and the cases whose verdict (or closing verdict) is not OK."""
    counts = Counter(entry["behavior"] for entry in results.values())
    not_ok = []
    for case in sorted(results, key=case_key):
        entry = results[case]
        if entry["behavior"] == "OK" and entry["behaviorClose"] in ("OK", "INFORMATIONAL"):
            continue
        detail = json.loads((workdir / entry["reportfile"]).read_text())
        not_ok.append(
            {
                "case": case,
                "behavior": entry["behavior"],
                "close": entry["behaviorClose"],
                "result": str(detail.get("result", ""))[:300],
            }
        )
    return {
        "cases": len(results),
        "counts": {verdict: counts.get(verdict, 0) for verdict in VERDICTS},
        "not_ok": not_ok,
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Autobahn|Testsuite 0.8.2",
        "",
        f"Measured {m['date']}, commit {m['commit']}, Python {m['python']}, trio "
        f"{m['packages']['trio']}; cases {', '.join(result['cases'])} but "
        f"{', '.join(EXCLUDE)}. `nox -s autobahn` (benchmarks/autobahn/run.py).",
        "",
        "server: `wstest -m fuzzingclient` against our echo server; client: our client "
        "through `wstest -m fuzzingserver`.",
        "",
    ]
    rows = [
        [
            run["run"],
            str(run["cases"]),
            *(str(run["counts"][v]) for v in VERDICTS),
            f"{run['seconds']:.0f}",
        ]
        for run in result["runs"]
    ]
    lines.append(markdown_table(("run", "cases", *VERDICTS, "seconds"), rows))
    for run in result["runs"]:
        if run["not_ok"]:
            lines += [f"Cases not OK (informational ones too) in {run['run']}:", ""]
            table = [
                [e["case"], e["behavior"], e["close"], e["result"].replace("|", "/")]
                for e in run["not_ok"]
            ]
            lines.append(markdown_table(("case", "verdict", "close", "wstest says"), table))
        if run["client_log"]:
            lines += [f"What our client raised in {run['run']}:", ""]
            lines += [f"- {entry}" for entry in run["client_log"]]
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", default=",".join(RUNS), help="runs, comma-separated")
    parser.add_argument("--cases", default="*", help="case patterns, comma-separated")
    parser.add_argument("--python2", default=find_python2(), help="a Python 2.7 interpreter")
    parser.add_argument("--venv", type=Path, default=ROOT / ".nox" / "autobahn-py27")
    parser.add_argument("--reports", type=Path, default=ROOT / "build" / "autobahn")
    parser.add_argument("--no-save", action="store_true", help="print, write no results")
    args = parser.parse_args(argv)
    runs = [run.strip() for run in args.only.split(",") if run.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    if args.python2 is None:
        parser.error("no Python 2.7 found: pass --python2 or set AUTOBAHN_PYTHON2")
    wstest = ensure_wstest(args.venv, args.python2)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    args.reports.mkdir(parents=True, exist_ok=True)
    certs = make_certs()
    result: dict[str, Any] = {"machine": machine(), "cases": cases, "runs": []}
    for name in runs:
        print(f"autobahn: {name} ...", flush=True)
        summary = trio.run(one_run, name, wstest, certs, cases, args.reports)
        result["runs"].append(summary)
        print(f"autobahn: {name}: {summary['counts']} in {summary['seconds']} s", flush=True)
    text = markdown(result)
    print(text)
    if not args.no_save:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        write_json(f"autobahn-{stamp}.json", result)
        write_json("autobahn-latest.json", result)
        (RESULTS / "autobahn-latest.md").write_text(text)
    failed = sum(run["counts"]["FAILED"] for run in result["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
