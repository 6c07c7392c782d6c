"""The API reference, generated at every build from the package's own ``__all__`` lists.

At ``builder-inited`` this extension imports every public module of ``deepnum_fem`` (no
part of its dotted name starts with ``_``; the ``cli`` module is the ``deepnum-fem`` command,
documented as such) and writes one page per module into ``docs/api/`` (git-ignored, rewritten
on each build; a page whose text did not change keeps its modification time, so incremental
builds stay incremental). A module's public names are its ``__all__``, or, without one, the
classes and functions it defines whose names do not start with ``_``.

Each object is documented in full once, on the page of its *canonical* module, and listed
with a link on every other page that exports it (``deepnum_fem.models`` re-exports its
submodules' classes, ``deepnum_fem`` the core operations): the top-level package when it
exports the object, else the module that defines it, else the first public module that
exports it. Modules added or moved (a module split into a package) appear without an edit
here.

:func:`public_api` is also what ``tests/test_docs.py`` checks for docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

PACKAGE = "deepnum_fem"
#: modules documented elsewhere (the command line) rather than in the API reference
SKIP = {"deepnum_fem.cli"}


@dataclass
class Module:
    name: str
    module: ModuleType
    names: list[str]                                             # its public names, in order
    canonical: dict[str, str] = field(default_factory=dict)     # name -> where it is documented
    data_docs: dict[str, str] = field(default_factory=dict)     # name -> ``#:`` doc of a data name


def public_module_names() -> list[str]:
    """``deepnum_fem`` and every importable public module under it, sorted by dotted name."""
    root = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(root.__path__, f"{PACKAGE}."):
        parts = info.name.split(".")[1:]
        if any(p.startswith("_") for p in parts) or info.name in SKIP:
            continue
        names.append(info.name)
    return sorted(names)


def _all_modules() -> dict[str, ModuleType]:
    """Every importable module of the package, private ones included (for attribute docs)."""
    root = importlib.import_module(PACKAGE)
    out = {}
    for info in pkgutil.walk_packages(root.__path__, f"{PACKAGE}."):
        try:
            out[info.name] = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001  (a module that cannot be imported has nothing to lend)
            continue
    return out


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or the public classes and functions the module defines."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [n for n, obj in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module.__name__]


def is_data(obj: object) -> bool:
    """Whether ``obj`` is a value (a constant) rather than a class, function or module: its
    documentation is a ``#:`` comment at its assignment, not a ``__doc__`` of its own."""
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))


def attribute_docs(module_name: str) -> dict[str, str]:
    """The ``#:`` comments (and docstrings after assignments) of a module's top-level names."""
    from sphinx.pycode import ModuleAnalyzer

    try:
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except Exception:  # noqa: BLE001  (no source: no attribute docs)
        return {}
    return {name: "\n".join(lines).strip() for (scope, name), lines in docs.items() if scope == ""}


def public_api() -> dict[str, Module]:
    """Every public module with its public names and where each name is documented."""
    modules = {}
    for name in public_module_names():
        module = importlib.import_module(name)
        modules[name] = Module(name, module, public_names(module))
    order = sorted(modules, key=lambda n: (n != PACKAGE, n.count("."), n))
    attr_docs = {name: attribute_docs(name) for name in modules}

    def home(module: Module, name: str) -> str:
        obj = getattr(module.module, name)
        exporters = [m for m in order if name in modules[m].names and getattr(modules[m].module, name) is obj]
        if inspect.ismodule(obj):
            return obj.__name__          # a module's own page
        if PACKAGE in exporters:
            return PACKAGE
        if is_data(obj):
            documented = [m for m in exporters if name in attr_docs[m]]
            return (documented or exporters)[0]
        defining = getattr(obj, "__module__", None)
        if defining in modules and defining in exporters:
            return defining
        return exporters[0]

    private: dict[str, ModuleType] = {}

    def data_doc(module: Module, name: str) -> str:
        """A value's ``#:`` doc: where it is exported, else in any module of the package, private
        ones included, that holds the same object under that name (a constant defined in a
        module that does not export it, or in a private module a package re-exports from)."""
        obj = getattr(module.module, name)
        holders = [m for m in order if getattr(modules[m].module, name, None) is obj]
        doc = next((attr_docs[m][name] for m in [module.name, *holders] if attr_docs[m].get(name)), "")
        if doc:
            return doc
        if not private:
            private.update(_all_modules())
        for other, mod in private.items():
            if getattr(mod, name, None) is obj:
                doc = attribute_docs(other).get(name, "")
                if doc:
                    return doc
        return ""

    for module in modules.values():
        module.canonical = {name: home(module, name) for name in module.names}
        module.data_docs = {name: data_doc(module, name) for name in module.names
                            if is_data(getattr(module.module, name))}
    return modules


# -- pages ------------------------------------------------------------------------------------

def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def _page(module: Module, modules: dict[str, Module]) -> str:
    lines = [".. This page is generated by docs/_ext/apigen.py at every build; edit the docstrings.\n",
             _title(f"``{module.name}``"),
             f".. automodule:: {module.name}\n   :no-members:\n"]
    children = sorted(m for m in modules if m.rsplit(".", 1)[0] == module.name and m != module.name)
    if children:
        lines.append(".. rubric:: Submodules\n")
        lines += [f"* :doc:`{child}` — {_summary(modules[child].module)}" for child in children]
        lines.append("")
    if module.names:
        lines.append(".. rubric:: Names\n")
        lines.append(".. list-table::\n   :widths: 35 65\n")
        for name in module.names:
            home = module.canonical[name]
            obj = getattr(module.module, name)
            target = obj.__name__ if inspect.ismodule(obj) else f"{home}.{name}"
            if inspect.ismodule(obj):
                doc = _summary(obj)
            elif is_data(obj):
                doc = _first_paragraph(module.data_docs.get(name, ""))
            else:
                doc = _first_paragraph(inspect.getdoc(obj) or "")
            role = "mod" if inspect.ismodule(obj) else "obj"
            lines.append(f"   * - :py:{role}:`~{target}`\n     - {_plain(doc) or '(no docstring)'}")
        lines.append("")
        elsewhere = [n for n in module.names if module.canonical[n] != module.name]
        if elsewhere:
            lines.append("Names documented on another page (this module re-exports them): "
                         + ", ".join(f":doc:`{n} <{module.canonical[n]}>`" for n in elsewhere) + ".\n")
    here = [n for n in module.names if module.canonical[n] == module.name]
    if here:
        lines.append(f".. currentmodule:: {module.name}\n")
        for name in here:
            obj = getattr(module.module, name)
            kind = _kind(obj)
            if kind in ("class", "exception"):
                lines.append(f".. auto{kind}:: {name}\n   :members:\n")
            elif kind == "function":
                lines.append(f".. autofunction:: {name}\n")
            else:
                doc = module.data_docs.get(name, "")
                own = attribute_docs(module.name).get(name)
                # a doc found in another module is given as content (autodoc reads this module's)
                content = "" if own or not doc else "\n\n" + "\n".join(f"   {line}" for line in doc.splitlines())
                lines.append(f".. autodata:: {name}{content}\n")
    return "\n".join(lines) + "\n"


def _first_paragraph(doc: str) -> str:
    first = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    return first[:-1] if first.endswith("::") else first   # "...form::" announces a block not shown here


def _summary(module: ModuleType) -> str:
    return _first_paragraph(inspect.getdoc(module) or "") or "(no module docstring)"


def _plain(text: str) -> str:
    """A summary line for a table: cross-references as code (their context is another page's)."""
    return re.sub(r":[\w:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"``\1``", text)


def _index(modules: dict[str, Module]) -> str:
    lines = [".. This page is generated by docs/_ext/apigen.py at every build.\n",
             _title("API reference"),
             "Every public name of ``deepnum_fem`` and of its public modules (their ``__all__``), "
             "from the docstrings. ``import deepnum_fem as dnf`` gives the core operations; the "
             "other modules are imported on first use (``dnf.geometry``, ``dnf.models``, ...).\n",
             ".. toctree::\n   :maxdepth: 1\n"]
    lines += [f"   {name}" for name in modules]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def aliases(modules: dict[str, Module]) -> dict[str, str]:
    """Every exported dotted name -> the dotted name it is documented under (``dnf.`` included)."""
    out = {}
    for module in modules.values():
        for name in module.names:
            obj = getattr(module.module, name)
            target = obj.__name__ if inspect.ismodule(obj) else f"{module.canonical[name]}.{name}"
            out[f"{module.name}.{name}"] = target
    out["dnf"] = PACKAGE
    return out


def _resolve_alias(app, env, node, contnode):
    """``missing-reference``: a reference to a re-exported name (``deepnum_fem.models.Monodomain``,
    ``dnf.fem_operator``, ``deepnum_fem.models.ShallowWater.fieldsplit_options``) resolves to
    where the object is documented."""
    if node.get("refdomain") != "py":
        return None
    table = _ALIASES
    target = node["reftarget"]
    parts = target.split(".")
    domain = env.domains["py"]
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            new = ".".join([table[head], *parts[cut:]])
            if new == target:
                break
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], new, node, contnode)
    # a short name in a docstring (``:func:`fem_operator``` in another module): the one
    # documented object of the package whose dotted name ends with it
    kinds = set(domain.objtypes_for_role(node["reftype"]) or ())
    if not target.startswith(PACKAGE) and not target.startswith("."):
        matches = [name for name, entry in domain.objects.items()
                   if name.startswith(f"{PACKAGE}.") and name.endswith(f".{target}")
                   and not entry.aliased and entry.objtype in kinds]
        if len(matches) == 1:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0], node, contnode)
    # a name of the package that exists but is not public (a module constant a docstring
    # mentions, a helper class in an annotation): code, without a link
    if _exists(target, node.get("py:module")):
        return contnode
    return None


def _exists(target: str, context: str | None) -> bool:
    for full in ([f"{context}.{target}"] if context else []) + [target]:
        parts = full.split(".")
        if parts[0] != PACKAGE:
            continue
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for part in parts[cut:]:
                    obj = getattr(obj, part)
            except AttributeError:
                break
            return True
    return False


_ALIASES: dict[str, str] = {}


def generate(app) -> None:
    out = Path(app.srcdir) / "api"
    out.mkdir(exist_ok=True)
    modules = public_api()
    _ALIASES.clear()
    _ALIASES.update(aliases(modules))
    pages = {f"{name}.rst": _page(module, modules) for name, module in modules.items()}
    pages["index.rst"] = _index(modules)
    for stale in out.glob("*.rst"):
        if stale.name not in pages:
            stale.unlink()
    for filename, text in pages.items():
        _write(out / filename, text)


def setup(app):
    app.connect("builder-inited", generate)
    app.connect("missing-reference", _resolve_alias)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
