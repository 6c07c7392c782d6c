"""Sphinx configuration of the deepnum-fem documentation (Sphinx + MyST Markdown + furo).

Build: ``./dnf docs`` or ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Two local extensions (``docs/_ext``) generate pages at build time, so nothing generated is
committed: ``apigen`` writes ``docs/api/`` from the ``__all__`` of every public module, and
``benchtables`` turns the committed ``bench/results/*.json`` into the benchmark tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path[:0] = [str(DOCS / "_ext"), str(REPO)]

import deepnum_fem  # noqa: E402  (dolfinx_solver before dolfinx, for autodoc's imports)

project = "deepnum-fem"
author = "deepnum-fem developers"
copyright = "deepnum-fem developers"  # noqa: A001  (Sphinx's name)
release = deepnum_fem.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "apigen",
    "benchtables",
    "demoresults",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
templates_path: list[str] = []

# MyST: $...$ maths, ::: fences, heading anchors for #links down to level 3
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# autodoc reads the Google-style docstrings (napoleon); signatures keep their annotations short
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False     # torch.nn.Module.forward's text is not ours
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False
python_display_short_literal_types = True

smartquotes = False                    # --options and "quotes" stay as written

html_theme = "furo"
html_title = f"deepnum-fem {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_last_updated_fmt = None

# -n (nitpicky): every reference must resolve, except to the libraries we build on, which have
# no inventory offline (the build must not need the network)
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(torch|numpy|np|dolfinx|ufl|basix|petsc4py|PETSc|mpi4py|MPI|collections|typing|pathlib|pyvista|"
              r"matplotlib|meshio|gmsh)(\..*)?"),
]


def _napoleon_except_attributes(app) -> None:
    """Napoleon reads the first line of an attribute's or property's docstring as ``type:
    description``; ours are sentences (``A direct solve: MUMPS LU.``). Keep napoleon for
    functions, classes and modules only."""
    from sphinx.ext.napoleon import _process_docstring

    listeners = app.events.listeners["autodoc-process-docstring"]
    for listener in list(listeners):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)

    def process(app, what, name, obj, options, lines):
        if what not in ("attribute", "data", "property"):
            _process_docstring(app, what, name, obj, options, lines)

    app.connect("autodoc-process-docstring", process)


def setup(app):
    app.connect("builder-inited", _napoleon_except_attributes)
