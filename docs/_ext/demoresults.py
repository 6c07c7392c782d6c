"""The demos' recorded results: ``{demo-metrics} NAME`` and ``{demo-figure} NAME FILE``.

``python bench/record.py NAME --ranks 2`` (NAME a script of ``demos/``) runs the demo and
copies what it wrote — ``metrics.json`` and the figures listed in ``bench/record.py`` — to
``docs/figures/NAME/``, with ``run.json`` (the command, commit, date, CPUs, load, versions).
``demo-metrics`` renders a table of ``metrics.json`` (every key, in the demo's order; a list of
flat dicts, e.g. one per mesh, becomes a table of its own, a column per dict headed by its
first value) and the run's conditions; ``demo-figure`` shows one of the figures with the caption given as content.
A missing file is a build error, so a page cannot show a number or a figure that is not
committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchtables import _paragraph, _table, conditions
from docutils import nodes
from sphinx.util.docutils import SphinxDirective

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def _value(x) -> str:
    if isinstance(x, list) and all(isinstance(v, (int, float)) for v in x):
        return ", ".join(_value(v) for v in x)
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return "—" if x is None else str(x)


def _is_rows(x) -> bool:
    """A list of flat dicts with the same keys (``_columns`` draws it)."""
    return (isinstance(x, list) and bool(x) and all(isinstance(row, dict) and list(row) == list(x[0]) for row in x)
            and not any(isinstance(v, (dict, list)) for row in x for v in row.values()))


def _columns(key: str, rows: list[dict]) -> nodes.table:
    """``rows`` as a table with a column per dict, headed by its first value, a row per key."""
    label, *keys = rows[0]
    return _table([f"{key}: {label}", *(_value(row.get(label)) for row in rows)],
                  [[k, *(_value(row.get(k)) for row in rows)] for k in keys])


class DemoMetrics(SphinxDirective):
    """``{demo-metrics} NAME``: ``docs/figures/NAME/metrics.json`` as a table, with the run's conditions."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        folder = FIGURES / self.arguments[0]
        try:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise self.error(f"demo-metrics: {e}; record it with python bench/record.py {self.arguments[0]}") from None
        for f in ("metrics.json", "run.json"):
            self.env.note_dependency(str(folder / f))
        rows = {key: value for key, value in metrics.items() if _is_rows(value)}
        body = [[key, _value(value)] for key, value in metrics.items() if key not in rows]
        tables = [_columns(key, value) for key, value in rows.items()]
        return [*tables, _table(["metrics.json", "value"], body),
                _paragraph(f"Conditions (from docs/figures/{self.arguments[0]}/run.json): {conditions(run)}")]


class DemoFigure(SphinxDirective):
    """``{demo-figure} NAME FILE`` with a caption as content: ``docs/figures/NAME/FILE``."""

    required_arguments = 2
    has_content = True

    def run(self) -> list[nodes.Node]:
        name, filename = self.arguments
        if not (FIGURES / name / filename).is_file():
            raise self.error(f"demo-figure: docs/figures/{name}/{filename} does not exist; record it with "
                             f"python bench/record.py {name}")
        figure = nodes.figure()
        figure += nodes.image(uri=f"/figures/{name}/{filename}", alt=" ".join(self.content) or filename)
        if self.content:
            caption = " ".join(self.content)
            figure += nodes.caption(caption, caption)
        return [figure]


def setup(app):
    app.add_directive("demo-metrics", DemoMetrics)
    app.add_directive("demo-figure", DemoFigure)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
