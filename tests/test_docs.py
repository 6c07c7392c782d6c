"""The documentation (``docs/``): docstrings of the public API, the built site's links, the pages' code.

* Every public name — each name in the ``__all__`` of ``deepnum_fem`` and of its public modules
  (the API reference is generated from the same lists, ``docs/_ext/apigen.py``) — has a
  docstring of its own: a class's own ``__doc__`` (not inherited, not a dataclass's generated
  signature), a function's, a module's; a constant its ``#:`` comment.
* The site builds with warnings as errors (references included: ``nitpicky``), and every
  internal link of the built HTML — an ``href`` to a local page and its ``#anchor``, an image —
  resolves. The build runs serially (``skip_in_parallel``), in a new interpreter, into a
  temporary folder: ``./dnf test`` builds ``docs/_build/html`` before the tests as well.
* Every ```python block of the pages runs as written, as in ``tests/test_readme.py``: serially
  in a new interpreter, under ``mpirun`` on every rank in this one.
"""

from __future__ import annotations

import dataclasses
import html.parser
import inspect
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mpi4py import MPI

import pytest
from code_blocks import NOT_RUN, Block, blocks, run

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason="no docs/ in this copy of the repository")
pytest.importorskip("sphinx", reason="the documentation needs the docs extra (pip install '.[docs]'); "
                                     "./dnf test installs it")
sys.path.insert(0, str(DOCS / "_ext"))
import apigen  # noqa: E402  (docs/_ext: the same public API the reference is generated from)

# -- docstrings -----------------------------------------------------------------------------


def _own_docstring(obj: object) -> str | None:
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if dataclasses.is_dataclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
            return None   # the signature dataclasses write when there is no docstring
        return doc
    return getattr(obj, "__doc__", None)


def test_the_public_api_is_found():
    modules = apigen.public_api()
    assert {"deepnum_fem", "deepnum_fem.parallel", "deepnum_fem.models", "deepnum_fem.precond",
            "deepnum_fem.geometry", "deepnum_fem.io", "deepnum_fem.sensors", "deepnum_fem.training",
            "deepnum_fem.verification", "deepnum_fem.convert"} <= set(modules)
    import deepnum_fem

    assert modules["deepnum_fem"].names == list(deepnum_fem.__all__)


def test_every_public_name_has_a_docstring():
    missing = []
    for module in apigen.public_api().values():
        if not (module.module.__doc__ or "").strip():
            missing.append(f"{module.name} (the module itself)")
        for name in module.names:
            obj = getattr(module.module, name)
            doc = module.data_docs.get(name) if apigen.is_data(obj) else _own_docstring(obj)
            if not (doc or "").strip():
                kind = "a '#:' comment at its assignment" if apigen.is_data(obj) else "a docstring"
                missing.append(f"{module.name}.{name} (needs {kind})")
    assert not missing, "public names without documentation:\n  " + "\n  ".join(missing)


# -- the built site -------------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []   # (tag.attribute, value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "link", "img", "script", "source"):
                self.refs.append((f"{tag}.{key}", attrs[key]))


def _broken_links(site: Path) -> list[str]:
    pages = {}
    for path in site.rglob("*.html"):
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = parser
    broken = []
    for path, parser in sorted(pages.items()):
        for what, ref in parser.refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith("//"):
                continue   # external
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site)}: {what}={ref!r}"
            if not target.is_file():
                broken.append(f"{where}: no file {target.relative_to(site) if target.is_relative_to(site) else target}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{where}: no anchor #{parts.fragment} in {target.relative_to(site)}")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The documentation, built fresh (``-E``) with warnings as errors into a temporary folder."""
    out = tmp_path_factory.mktemp("docs") / "html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI", "HYDRA"))}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-b", "html", "-q",
                           str(DOCS), str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the docs build failed:\n{proc.stdout[-4000:]}{proc.stderr[-8000:]}"
    return out


@pytest.mark.skip_in_parallel   # one build; it starts an interpreter
def test_the_site_builds_and_its_internal_links_resolve(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    for page in ("index.html", "getting-started.html", "concepts.html", "benchmarks.html", "running-at-scale.html",
                 "networks-in-forms.html", "preconditioners.html", "applications/cardiac.html",
                 "applications/air-quality.html", "applications/shallow-water.html", "api/index.html",
                 "api/deepnum_fem.html", "api/deepnum_fem.models.html"):
        assert page in pages, f"{page} was not built ({len(pages)} pages)"
    broken = _broken_links(site)
    assert not broken, f"{len(broken)} internal links do not resolve:\n  " + "\n  ".join(broken[:50])


@pytest.mark.skip_in_parallel
def test_every_public_name_is_on_the_api_pages(site):
    """Each public name has its description (an anchor with its dotted name) on the page of the
    module that documents it."""
    missing = []
    for module in apigen.public_api().values():
        for name in module.names:
            if inspect.ismodule(getattr(module.module, name)):
                continue
            home = module.canonical[name]
            page = site / "api" / f"{home}.html"
            if f'id="{home}.{name}"' not in page.read_text(encoding="utf-8"):
                missing.append(f"{module.name}.{name} (expected on api/{home}.html)")
    assert not missing, "names without a description in the API reference:\n  " + "\n  ".join(missing)


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "a.html").write_text('<a id="here" href="b.html#nowhere">x</a><a href="#here">y</a>'
                                     '<a href="missing.html">z</a><a href="https://example.org/x.html">w</a>')
    (tmp_path / "b.html").write_text('<h1 id="top">b</h1><a href="a.html#here">back</a>')
    broken = _broken_links(tmp_path)
    assert len(broken) == 2 and "#nowhere" in broken[0] and "missing.html" in broken[1], broken


# -- the pages' code ------------------------------------------------------------------------

def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not p.relative_to(DOCS).parts[0].startswith(("_", "api"))
                  and p.name != "README.md")


def _blocks(path: Path) -> list[Block]:
    return blocks(path.read_text(encoding="utf-8"), path)


def _code_params() -> list:
    params = []
    for path in _pages():
        for block in _blocks(path):
            if block.lang == "python":
                params.append(pytest.param(path, block, id=f"{path.relative_to(DOCS).as_posix()}:{block.first_line}"))
    return params


def test_every_fence_of_the_pages_is_classified():
    """A block is run (```python), declared not to be Python (```bash, ```text, ...), or a directive."""
    unknown = [f"{path.relative_to(DOCS)}:{b.first_line - 1}: ```{b.lang}" for path in _pages()
               for b in _blocks(path) if b.lang not in NOT_RUN | {"python"} and not b.lang.startswith("{")]
    assert not unknown, f"fences in no known language (run: python; not run: {sorted(NOT_RUN)}): {unknown}"
    assert len(_code_params()) >= 5


@pytest.mark.parametrize(("path", "block"), _code_params())
def test_page_code_block(path: Path, block: Block, mpi_tmp_path):
    """Run one block in a fresh namespace, in an empty directory shared by the ranks."""
    failure = run(block, path, mpi_tmp_path)
    failures = MPI.COMM_WORLD.allgather(failure)
    if any(failures):
        pytest.fail("\n".join(f"the block in {path} (rank {rank}) failed:\n{text}"
                              for rank, text in enumerate(failures) if text), pytrace=False)
