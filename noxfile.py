"""Developer sessions: ``nox -s tests lint typecheck docs``; also interop, oldest, bench."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (unit, integration and the bounded reliability runs)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


def floors() -> list[str]:
    """Each runtime dependency in pyproject.toml at its floor: ``name>=X`` -> ``name==X``."""
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lows) != 1:
            raise ValueError(f"pyproject.toml: {line!r} needs one floor (>=) for nox -s oldest")
        pins.append(f"{requirement.name}=={lows[0]}")
    return pins


@nox.session
def oldest(session: nox.Session) -> None:
    """The test suite on the oldest dependencies pyproject.toml allows (not run by default)."""
    constraints = Path(session.create_tmp()) / "floors.txt"
    constraints.write_text("\n".join(floors()) + "\n", encoding="utf-8")
    session.install("-e", ".[test]", "-c", str(constraints))
    session.run("python", "-m", "pip", "list")  # what was tested, for the log
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def demo(session: nox.Session) -> None:
    """The demo: simulator, example agent and callers; ``nox -s demo -- --calls 8``."""
    session.install("-e", ".")
    session.run("telcoflow-trio", "demo", *session.posargs)


@nox.session
def interop(session: nox.Session) -> None:
    """The official telcoflow 1.0.0 SDK against our simulator."""
    session.install("-e", ".[test]", "telcoflow==1.0.0")
    session.run("pytest", "-q", "-m", "interop", "--run-interop", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors."""
    session.install("-e", ".[docs,test]")  # autodoc imports the pytest plugin
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers (never part of the tests): ``nox -s bench -- --quick``."""
    session.install(
        "-e",
        ".[test]",
        "teler==1.0.0",
        "telcoflow==1.0.0",
        "uvicorn",
        "uvloop",
        "websockets",
        "picows",
        "py-spy",
    )
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def autobahn(session: nox.Session) -> None:
    """RFC 6455 conformance (Autobahn|Testsuite 0.8.2 on Python 2.7; never in CI).

    ``nox -s autobahn -- --only server-plain --cases '6.4.*'``; see benchmarks/autobahn/run.py.
    """
    # virtualenv < 20.22 is the last to make the Python 2.7 environment wstest runs in.
    session.install("-e", ".[test]", "virtualenv<20.22")
    session.run("python", "benchmarks/autobahn/run.py", *session.posargs)
