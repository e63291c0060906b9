"""The documentation: the API reference is complete and the code samples work.

Conventions checked here (docs/ follows them):

* every public name of the public modules is the target of an autodoc (or ``py``)
  directive in ``docs/api/``, or belongs to a module documented there with
  ``automodule`` + ``:members:`` + ``:undoc-members:``;
* every ``.. code-block:: python`` compiles (top-level ``await`` allowed, since
  many samples are handler bodies) and imports only names that exist;
* a sample marked ``:class: runnable`` is executed, and so are the ``test_*``
  coroutine functions it defines (under ``MockClock``); it must be self-contained
  and touch no network;
* a ``literalinclude`` may only show a program from ``examples/``, and that program
  must be run by a test under ``tests/`` (the examples' own tests);
* the call state tables and diagram render every row of the state table.

The full Sphinx build runs in ``nox -s docs``; nothing here runs Sphinx.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import runpy
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from telcoflow_trio import TelcoflowClientConfig
from telcoflow_trio.proto import TRANSITIONS, CallCommand, CallState

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CONF: dict[str, Any] = runpy.run_path(str(DOCS / "conf.py"))  # also puts docs/_ext on sys.path

import call_states  # noqa: E402  (docs/_ext, importable once conf.py ran)

#: Modules whose public names must all be in the API reference (when they exist).
PUBLIC_MODULES = [
    "telcoflow_trio",
    "telcoflow_trio.config",
    "telcoflow_trio.events",
    "telcoflow_trio.exceptions",
    "telcoflow_trio.metrics",
    "telcoflow_trio.streams",
    "telcoflow_trio.streams.teler",
    "telcoflow_trio.simulator",
    "telcoflow_trio.testing",
    "telcoflow_trio.testing.teler",
    "telcoflow_trio.ws",
]

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?P<name>[\w:-]+):: *(?P<arg>\S*)")


def _rst_files(under: Path = DOCS) -> list[Path]:
    return sorted(p for p in under.rglob("*.rst") if "_build" not in p.parts)


def _directives(path: Path) -> list[tuple[str, str, int, list[str], str]]:
    """``(name, argument, line, options, content)`` of every directive in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        body: list[str] = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        n = 0
        while n < len(body) and body[n].strip().startswith(":"):
            n += 1
        content = textwrap.dedent("\n".join(body[n:])).strip("\n") + "\n"
        found.append((match["name"], match["arg"], i + 1, [b.strip() for b in body[:n]], content))
    return found


def _python_samples() -> list[tuple[str, str, bool]]:
    """``(id, code, runnable)`` of every Python code block in the docs."""
    samples = []
    for path in _rst_files():
        for name, arg, line, options, content in _directives(path):
            if name in ("code-block", "code", "sourcecode") and arg == "python":
                runnable = any(o.startswith(":class:") and "runnable" in o for o in options)
                samples.append((f"{path.relative_to(DOCS)}:{line}", content, runnable))
    return samples


SAMPLES = _python_samples()
RUNNABLE = [pytest.param(code, id=sample_id) for sample_id, code, runnable in SAMPLES if runnable]
ALL = [pytest.param(code, runnable, id=sample_id) for sample_id, code, runnable in SAMPLES]


def _public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)
        ]
    return list(names)


def _documented_in_api() -> tuple[set[str], dict[str, set[str]]]:
    """Full names that API directives describe, and the modules documented wholesale
    (``automodule`` with ``:members:`` and ``:undoc-members:``) with their exclusions.

    Names resolve as Sphinx resolves them: ``automodule``/``currentmodule`` set the
    current module; a dotted ``auto*`` argument is absolute, a plain ``py``
    directive's argument is relative to the current module.
    """
    targets: set[str] = set()
    wholesale: dict[str, set[str]] = {}
    for path in _rst_files(DOCS / "api"):
        if str(path.relative_to(DOCS)) in CONF["exclude_patterns"]:
            continue
        current = ""
        for name, arg, _, options, _ in _directives(path):
            kind = name.removeprefix("py:")
            target = arg.split("(")[0]  # an explicit signature may follow the name
            if kind in ("currentmodule", "module", "automodule"):
                current = target
            if kind == "automodule" and {":members:", ":undoc-members:"} <= set(options):
                excluded = [o for o in options if o.startswith(":exclude-members:")]
                names = excluded[0].removeprefix(":exclude-members:") if excluded else ""
                wholesale[target] = {n.strip() for n in names.split(",")}
            elif kind.startswith("auto") and kind[4:] in _OBJECT_KINDS:
                targets.add(target if "." in target or not current else f"{current}.{target}")
            elif kind in _OBJECT_KINDS:
                targets.add(f"{current}.{target}" if current else target)
    return targets, wholesale


_OBJECT_KINDS = ("class", "exception", "function", "data", "method", "attribute")


def _resolve(full_name: str) -> object:
    """The object ``module.name`` stands for, or ``None`` if it does not exist (yet)."""
    module_name, _, name = full_name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    return getattr(module, name, None)


def test_every_public_name_is_in_the_api_reference() -> None:
    targets, wholesale = _documented_in_api()
    # A re-export is documented once, under its public name.
    documented_objects = [obj for obj in map(_resolve, targets) if obj is not None]
    missing = []
    checked = 0
    for module_name in PUBLIC_MODULES:
        if not CONF["_has"](module_name):
            continue  # not written yet: its page joins the build when it lands
        module = importlib.import_module(module_name)
        for name in _public_names(module):
            checked += 1
            if inspect.ismodule(getattr(module, name)):
                continue  # a submodule has a page of its own
            obj = getattr(module, name)
            # automodule documents the classes and functions of __all__, not its data.
            by_all = (
                hasattr(module, "__all__")
                and name not in wholesale.get(module_name, {name})
                and (inspect.isclass(obj) or inspect.isfunction(obj))
            )
            documented = any(obj is d for d in documented_objects)
            if f"{module_name}.{name}" not in targets and not by_all and not documented:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"not in docs/api/: {missing}"
    assert checked >= 30  # the events, exceptions and config modules at least


def test_every_config_option_is_in_the_options_table() -> None:
    text = (DOCS / "api" / "config.rst").read_text(encoding="utf-8")
    rows = re.findall(r"^   \* - (.+)\n     - (.+)$", text, flags=re.MULTILINE)
    table = {
        option: default for cells, default in rows for option in re.findall(r"``(\w+)``", cells)
    }
    for field in attrs.fields(TelcoflowClientConfig):
        assert field.name in table, f"option {field.name} is missing from docs/api/config.rst"
        default = field.default
        if isinstance(default, int | float | str) and not isinstance(default, bool):
            shown = getattr(default, "value", default)
            assert f"``{shown}``" == table[field.name].strip(), f"default of {field.name}"


@pytest.mark.parametrize(("code", "runnable"), ALL)
def test_python_sample_compiles(code: str, runnable: bool) -> None:
    flags = 0 if runnable else ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    compile(code, "<docs sample>", "exec", flags=flags)


@pytest.mark.parametrize("code", [pytest.param(p.values[0], id=p.id) for p in ALL])
def test_python_sample_imports_exist(code: str) -> None:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("telcoflow_trio"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{module.__name__}.{alias.name}")  # a submodule
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("telcoflow_trio"):
                    importlib.import_module(alias.name)


@pytest.mark.parametrize("code", RUNNABLE)
def test_runnable_sample_runs(code: str) -> None:
    """Run the sample; then run the ``test_*`` functions it defines, as pytest-trio
    would, under ``MockClock`` with autojump (the testing guide's samples)."""
    namespace: dict[str, Any] = {"__name__": "docs_sample"}
    exec(compile(code, "<docs sample>", "exec"), namespace)
    for name, test in namespace.items():
        if name.startswith("test_") and inspect.iscoroutinefunction(test):
            clock = trio.testing.MockClock(autojump_threshold=0)
            wants_clock = "autojump_clock" in inspect.signature(test).parameters
            trio.run(functools.partial(test, clock) if wants_clock else test, clock=clock)


def test_runnable_samples_exist() -> None:
    # The convention is only worth something if it is used.
    assert len(RUNNABLE) >= 4


def test_literalincludes_show_tested_examples() -> None:
    tests_text = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("*.py"))
    for path in _rst_files():
        for name, arg, line, _, _ in _directives(path):
            if name != "literalinclude":
                continue
            target = (DOCS / arg.lstrip("/")) if arg.startswith("/") else (path.parent / arg)
            target = target.resolve()
            where = f"{path.relative_to(DOCS)}:{line}"
            assert target.is_relative_to(REPO / "examples"), f"{where}: not under examples/"
            assert target.is_file(), f"{where}: {arg} does not exist"
            assert target.stem in tests_text, f"{where}: no test runs examples/{target.name}"


def test_state_diagram_is_drawn_from_the_table() -> None:
    diagram = call_states.render_diagram()
    blocks = dict(
        (block.splitlines()[0].split()[0], block) for block in diagram.split("\n\n") if block
    )
    for (state, command), (ok, _) in TRANSITIONS.items():
        method = call_states.method_of(command) + "()"
        block = blocks[f"[{state}]"]
        target = f"[{ok}]" if ok != state else f"stays {state}"
        drawn = any(method in line and target in line for line in block.splitlines())
        assert drawn, f"{state} --{command}--> {ok} is not in the diagram"
    assert "final: no command is allowed" in blocks[f"[{CallState.DISCONNECTED}]"]
    # A different table draws a different diagram: nothing is hard-coded.
    smaller = {k: v for k, v in TRANSITIONS.items() if k[1] is not CallCommand.SPY}
    assert "spy()" in diagram
    assert "spy()" not in call_states.render_diagram(smaller)


def test_state_tables_have_a_row_per_transition() -> None:
    rows = "\n".join(call_states.render_transitions())
    assert rows.count("   * - ``") == len(TRANSITIONS)
    for (state, command), (ok, failed) in TRANSITIONS.items():
        expected = f"   * - ``{state}``\n     - {call_states.method_role(command)} (``{command}``)"
        assert f"{expected}\n     - ``{ok}``\n     - ``{failed}``" in rows
    allowed = "\n".join(call_states.render_allowed())
    assert allowed.count("   * - ``") == len(CallState)


def test_every_command_has_a_method() -> None:
    assert set(call_states.METHODS) == set(CallCommand)


def test_readme_commands_are_on_the_index_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = re.search(r"```console\n(.*?)```", readme, flags=re.DOTALL)
    assert commands, "README.md should open with a console block of two commands"
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    for command in commands[1].strip().splitlines():
        assert command.strip() in index


def test_api_pages_of_missing_modules_are_left_out() -> None:
    for page, (module, *names) in CONF["API_PAGES"].items():
        assert (DOCS / page).is_file()
        assert (page in CONF["exclude_patterns"]) != CONF["_has"](module, *names)
