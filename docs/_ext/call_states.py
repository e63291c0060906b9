"""The ``call-states`` directive: call state tables and diagram drawn from the code.

The state machine lives in :data:`telcoflow_trio.proto.TRANSITIONS`; the client
checks it before sending a command and the simulator before accepting one. These
pages are rendered from the same table at build time, so the documentation cannot
drift from the code. Usage, with one argument saying what to draw::

    .. call-states:: diagram
    .. call-states:: transitions
    .. call-states:: allowed

The rendering functions are plain functions of the table so that tests can check
them without running Sphinx.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

from telcoflow_trio.proto import TRANSITIONS, CallCommand, CallState

Table = Mapping[tuple[CallState, CallCommand], tuple[CallState, CallState]]

#: The :class:`~telcoflow_trio.ActiveCall` method that sends each wire command.
METHODS: dict[CallCommand, str] = {
    CallCommand.ANSWER: "answer",
    CallCommand.CONNECT: "connect",
    CallCommand.WHISPER: "whisper",
    CallCommand.BARGE: "barge",
    CallCommand.SPY: "spy",
    CallCommand.DISCONNECT: "disconnect",
    CallCommand.CLOSE: "close",
    CallCommand.INTERRUPT: "clear_send_audio_buffer",
}


def method_of(command: CallCommand) -> str:
    """The method name for ``command``; fails the build for a command nobody documented."""
    try:
        return METHODS[command]
    except KeyError:
        raise ExtensionError(
            f"docs/_ext/call_states.py has no ActiveCall method for {command!s}; add it to METHODS"
        ) from None


def _rows(table: Table) -> list[tuple[CallState, CallCommand, CallState, CallState]]:
    states, commands = list(CallState), list(CallCommand)
    return sorted(
        ((s, c, ok, failed) for (s, c), (ok, failed) in table.items()),
        key=lambda row: (states.index(row[0]), commands.index(row[1])),
    )


def method_role(command: CallCommand) -> str:
    return f":meth:`~telcoflow_trio.ActiveCall.{method_of(command)}`"


def render_transitions(table: Table = TRANSITIONS) -> list[str]:
    """rST lines of a table: state, method (wire command), state after success and failure."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - In state",
        "     - Method (wire command)",
        "     - On success",
        "     - On failure",
    ]
    for state, command, ok, failed in _rows(table):
        lines += [
            f"   * - ``{state}``",
            f"     - {method_role(command)} (``{command}``)",
            f"     - ``{ok}``",
            f"     - ``{failed}``",
        ]
    return lines


def render_allowed(table: Table = TRANSITIONS) -> list[str]:
    """rST lines of a table: each state and the methods allowed in it."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - State",
        "     - Allowed methods",
    ]
    for state in CallState:
        allowed = [method_role(c) for s, c, _, _ in _rows(table) if s is state]
        lines += [
            f"   * - ``{state}``",
            f"     - {', '.join(allowed) or 'none: the call has ended'}",
        ]
    return lines


def render_diagram(table: Table = TRANSITIONS) -> str:
    """A plain-text state diagram: each state and where each of its commands leads."""
    rows = _rows(table)
    width = max((len(method_of(c)) for s, c, ok, _ in rows if ok != s), default=0) + 2
    out: list[str] = []
    for state in CallState:
        lines = [
            f"{method_of(c) + '()':<{width}} ---> [{ok}]"
            for s, c, ok, _ in rows
            if s is state and ok != s
        ]
        stays = [f"{method_of(c)}()" for s, c, ok, _ in rows if s is state and ok == s]
        if stays:
            lines.append(f"{', '.join(stays)}: stays {state}")
        out.append(f"[{state}]" + ("" if lines else "  final: no command is allowed"))
        out += [
            f"  {'`--' if i == len(lines) - 1 else '|--'} {line}" for i, line in enumerate(lines)
        ]
        out.append("")
    if all(failed == s for s, _, _, failed in rows):
        out.append("A command that fails leaves the state unchanged.")
    return "\n".join(out).rstrip() + "\n"


class CallStatesDirective(SphinxDirective):
    """``.. call-states:: diagram|transitions|allowed``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        if kind == "diagram":
            text = render_diagram()
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            return [block]
        renderers = {"transitions": render_transitions, "allowed": render_allowed}
        if kind not in renderers:
            raise self.error(
                f"call-states: expected diagram, transitions or allowed; got {kind!r}"
            )
        container = nodes.container()
        self.state.nested_parse(
            StringList(renderers[kind](), source="<call-states>"), self.content_offset, container
        )
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("call-states", CallStatesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
