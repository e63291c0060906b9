"""Sphinx configuration: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.

Extensions that ship with Sphinx, myst-parser (from the ``docs`` extra; it reads
the Markdown pages, e.g. ``performance.md``, which the benchmark runner rewrites) and
the local ``_ext/call_states.py``; the build needs no network.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import telcoflow_trio

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "telcoflow_trio"
author = "telcoflow_trio developers"
project_copyright = "telcoflow_trio developers"
release = telcoflow_trio.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser", "call_states"]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not as duplicates of autodoc's members

html_theme = "alabaster"
html_title = f"telcoflow_trio {release}"
html_theme_options = {
    "description": "Trio-native voice agents on Telcoflow",
    "fixed_sidebar": True,
}


def _has(module: str, *names: str) -> bool:
    """Whether ``module`` imports and has ``names``.

    A package directory without its ``__init__.py`` yet (a namespace package) does
    not count. Import errors other than the module itself missing fail the build.
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module + ".").startswith(exc.name + "."):
            return False
        raise
    return getattr(mod, "__file__", None) is not None and all(hasattr(mod, n) for n in names)


# API pages of parts that are still being written join the build (through the glob
# toctree in api/index.rst) as soon as the code they describe imports.
API_PAGES = {
    "api/client.rst": ("telcoflow_trio", "TelcoflowClient", "ActiveCall"),
    "api/streams.rst": ("telcoflow_trio.streams",),
    "api/simulator.rst": ("telcoflow_trio.simulator",),
    "api/testing.rst": ("telcoflow_trio.testing",),
}
exclude_patterns += [
    page for page, (module, *names) in API_PAGES.items() if not _has(module, *names)
]


def _keep_attribute_sentences(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Napoleon reads ``x: y`` on an attribute docstring's first line as ``type: text``;
    the ``#:`` comments in this code base are sentences ("``None``: never"), so
    hand napoleon an empty type. Runs before napoleon (lower priority number)."""
    if what in ("attribute", "data", "property") and lines:
        lines[0] = ": " + lines[0]


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _keep_attribute_sentences, priority=400)
