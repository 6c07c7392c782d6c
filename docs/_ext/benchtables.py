"""Benchmark tables generated from the committed ``bench/results/NAME.nRANKS.json`` files.

``bench/record.py`` runs a benchmark script with ``--json`` and writes its output, untouched,
under ``"result"``, next to the conditions of the run (command, commit, date, CPUs, load,
versions). In a page,

    ```{bench-table} cardiac
    ```

renders one table with a column per recorded rank count, then the conditions of each run.
A row may also give a time (seconds, or any cost where lower is faster) of each run: the
table then has a last column, the speed-up from the fewest ranks to the most (the first
record's time over the last's). A benchmark in ``GRIDS`` lays out its own table from all its
records instead (``niederer``: a row per case and code, a column per point). Every number
comes from those files, at build time; nothing is generated into the source tree. A missing
or malformed file is a build error (a warning, and the docs build with ``-W``), and a page
that shows a table is rebuilt when its JSON files change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
RANKS = (1, 2)
#: tables drawn from another benchmark's records, on some of its rank counts: name -> (benchmark, ranks)
SOURCES = {"coastal_bay_sweep": ("coastal_bay", (2,))}

#: ``(label, cell)``, or ``(label, cell, time)`` for a row that gets a speed-up across the runs
Row = tuple[str, Callable[[dict], str]] | tuple[str, Callable[[dict], str], Callable[[dict], float | None]]


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _case(rows: list[dict], name: str, **match) -> dict | None:
    return next((r for r in rows if r.get("case") == name and all(r.get(k) == v for k, v in match.items())), None)


def _speedup(rows: list[Row], records: list[dict]) -> list[str] | None:
    """The speed-up column (first record's time / last record's), or None when no row has a time."""
    if len(records) < 2 or not any(len(row) > 2 for row in rows):
        return None
    first, last = records[0]["result"], records[-1]["result"]
    cells = []
    for row in rows:
        t = (row[2](first), row[2](last)) if len(row) > 2 else (None, None)
        cells.append("—" if None in t or not t[1] > 0 else f"{t[0] / t[1]:.2f}×")
    return cells


def _ratio_cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    return f"{_f(row['forward_s'], 3)} s → {_f(row['forward_plus_gradient_s'], 3)} s ({_f(row['ratio'])})"


_FEM_CASES = {
    "linear-mumps-k": "k control: operator assembled and factorised at each call",
    "linear-mumps-f": "f control: operator factorised once for all calls",
    "linear-gamg-k": "k control, iterative",
    "newton": "Newton from zero, f control",
}


def _fem_operator(r: list[dict]) -> list[Row]:
    rows: list[Row] = []
    for case, what in _FEM_CASES.items():
        def cell(res, case=case):
            return _ratio_cell(_case(res, case))
        solver = next((x["solver"] for x in r if x.get("case") == case), "")
        rows.append((f"{what} ({solver}): forward → forward + gradient (ratio)", cell))

    def batch(res):
        row = _case(res, "batch16")
        return "not run" if row is None else (f"{_f(row['batched_s'], 3)} s vs {_f(row['loop_s'], 3)} s "
                                              f"(batched {_f(row['speedup'])}× as fast)")

    rows.append(("16 right-hand sides: one batched call vs 16 calls", batch))
    for every, label in ((None, "no checkpoints"), (20, "checkpoint_every=20")):
        def memory(res, every=every):
            row = _case(res, "rollout-memory", checkpoint_every=every)
            return "not run" if row is None else (f"{_f(row['peak_mib'], 1)} MiB/rank "
                                                  f"(one state {_f(row['state_mib'], 2)} MiB)")
        rows.append((f"200-step heat rollout, peak traced host memory over forward + backward, {label}", memory))
    rows.append(("P1 dofs", lambda res: f"{res[0]['dofs']:,}" if res and "dofs" in res[0] else "—"))
    return rows


def _cardiac(r: dict) -> list[Row]:
    return [
        ("P1 dofs; steps of the rollout", lambda x: f"{x['dofs']:,}; {x['steps']}"),
        ("time per step, no graph / recording the graph",
         lambda x: f"{_f(x['ms_per_step_nograd'])} / {_f(x['ms_per_step_graph'])} ms"),
        ("time per step recording the graph in checkpoint blocks of 20",
         lambda x: f"{_f(x['ms_per_step_graph_checkpointed'])} ms"),
        ("(forward + gradient) / forward, no checkpoints", lambda x: _f(x["gradient_ratio"])),
        ("same with checkpoint blocks of 20 steps (one more forward)", lambda x: _f(x["gradient_ratio_checkpointed"])),
        ("(forward + gradient) / forward without graph, no checkpoints", lambda x: _f(x["gradient_ratio_vs_nograd"])),
        ("what autograd saves for the backward, whole rollout, no checkpoints (saved-tensor hooks)",
         lambda x: f"{_f(x['saved_mib_per_rank'], 1)} MiB/rank ({_f(x['saved_mib_per_rank'] / x['steps'], 3)} "
                   "MiB per step)"),
    ]


def _transport(r: dict) -> list[Row]:
    def share(key: str) -> Callable[[dict], str]:
        return lambda x: f"{_f(x[key], 3)} ms ({100 * x[key] / x['ms_per_step_nograd']:.0f} % of a step)"

    def sensors(n: str) -> Callable[[dict], str]:
        def cell(x):
            s = x["sensor_cost"][n]
            return (f"build {_f(s['build_ms'], 1)} ms; per step {_f(s['local_us'], 1)} µs "
                    f"({100 * s['local_fraction_of_step']:.1f} % of a step); "
                    f"sum of the series {_f(s['sum_series_ms'], 3)} ms")
        return cell

    return [
        ("P1 dofs; steps; sensors; NeuralEmission weights",
         lambda x: f"{x['dofs']:,}; {x['steps']}; {x['sensors']}; {x['emission_weights']:,}"),
        ("time per step, no graph / recording the graph",
         lambda x: f"{_f(x['ms_per_step_nograd'])} / {_f(x['ms_per_step_graph'])} ms"),
        ("(forward + gradient) / forward, no checkpoints", lambda x: _f(x["gradient_ratio"])),
        ("same with checkpoint blocks of 20 steps", lambda x: _f(x["gradient_ratio_checkpointed"])),
        ("network evaluated once per rollout instead of every step: time, no graph / forward + gradient",
         lambda x: f"{_f(x['hoisted_vs_per_step_nograd'])}× / {_f(x['hoisted_vs_per_step_gradient'])}×"),
        ("factorisations: first rollout / a gradient rollout after a change of operator / all timed rollouts",
         lambda x: f"{x['factorisations_first_rollout']} / {x['factorisations_gradient_rollout']} / "
                   f"{x['factorisations_later']} (in {x['later_rollouts']})"),
        ("one residual assembly (SUPG form)", share("residual_assembly_ms")),
        ("one LU solve (MUMPS, factorised)", share("lu_solve_ms")),
        ("one evaluation of the emission network, no graph", share("emission_ms_nograd")),
        ("20 point sensors", sensors("20")),
        ("200 point sensors", sensors("200")),
    ]


def _shallow_water(r: dict) -> list[Row]:
    rows: list[Row] = [
        ("mesh: vertices; P2–P1 dofs; steps of dt",
         lambda x: f"{x['vertices']:,}; {x['dofs']:,}; {x['steps']} of {x['dt']:.0f} s"),
    ]
    for name, label in (("field", "DG0 drag field"), ("law", "learned drag law (MLP in the form)")):
        def ckpt(x, name=name):
            c = x[name]
            if c["gradient_ratio_checkpointed"] is None:
                return f"fails: {(c['checkpointing_error'] or '').splitlines()[0][:80]}"
            return _f(c["gradient_ratio_checkpointed"])
        rows += [
            (f"{label}: time per step, no graph / recording the graph",
             lambda x, name=name: f"{_f(x[name]['ms_per_step_nograd'], 1)} / {_f(x[name]['ms_per_step_graph'], 1)} ms"),
            (f"{label}: Newton iterations per step, mean (max)",
             lambda x, name=name: f"{_f(x[name]['newton_mean'])} ({x[name]['newton_max']})"),
            (f"{label}: (forward + gradient) / forward without graph, no checkpoints",
             lambda x, name=name: _f(x[name]["gradient_ratio"])),
            (f"{label}: same with checkpoint blocks of 20 steps", ckpt),
        ]
    return rows


def _air_quality(r: dict) -> list[Row]:
    def named(key: str, name: str) -> Callable[[dict], dict]:
        return lambda x: next(row for row in x[key] if row["name"] == name)

    def iterative(x: dict, name: str) -> str:
        row = named("iterative", name)(x)
        if "error" in row:
            return f"fails: {row['error'].splitlines()[0][:100]}"
        return (f"{_f(row['ms_per_step_nograd'])} ms/step ({_f(row['vs_mumps'])}× MUMPS's), "
                f"{row['iterations_mean']:.1f} iterations; differs from "
                f"MUMPS by {row['rel_diff_state']:.0e} / {row['rel_diff_series']:.0e} / {row['rel_diff_gradient']:.0e}")

    def iterative_ms(x: dict, name: str) -> float | None:
        return named("iterative", name)(x).get("ms_per_step_nograd")

    def bad(x: dict, name: str) -> str:
        row = named("bad_options", name)(x)
        raised = "/".join(row["raised"]) or "nothing raised"
        return f"{raised} on {row['ranks_raised']} of {x['ranks']} ranks"

    def memory(x: dict) -> str:
        m = x["memory"]
        return "not measured" if m["checkpointed_mib"] is None else f"{_f(m['checkpointed_mib'], 1)} MiB"

    def plain(x: dict) -> str:
        m = x["memory"]
        if m["plain_mib"] is None:
            return "not measured"
        scaled = m["plain_mib"] * m["checkpointed_steps"] / m["plain_steps"]
        return f"{_f(m['plain_mib'], 1)} MiB ({_f(scaled, 0)} MiB scaled to {m['checkpointed_steps']} steps)"

    m, every = r["memory"], r["checkpoint_every"]
    wind = "Navier–Stokes" if r["wind"] == "ns" else "potential flow"
    rows: list[Row] = [
        ("P1 dofs; cells; mesh size away from / at the walls",
         lambda x: f"{x['dofs']:,}; {x['cells']:,}; {x['h']:g} / {x['h_near']:g} m"),
        (f"wind ({wind}): Newton iterations; time", lambda x: f"{x['wind_newton_iterations']}; {_f(x['wind_s'], 1)} s",
         lambda x: x["wind_s"]),
        ("time per step, no graph (MUMPS LU)", lambda x: f"{_f(x['ms_per_step_nograd'])} ms",
         lambda x: x["ms_per_step_nograd"]),
        (f"time per step recording the graph / in checkpoint blocks of {every}",
         lambda x: f"{_f(x['ms_per_step_graph'])} / {_f(x['ms_per_step_graph_checkpointed'])} ms",
         lambda x: x["ms_per_step_graph"]),
        ("one factorisation of the step operator", lambda x: f"{_f(x['factorisation_s'], 3)} s",
         lambda x: x["factorisation_s"]),
        ("(forward + gradient) / forward, no checkpoints", lambda x: _f(x["gradient_ratio"])),
        (f"same with checkpoint blocks of {every}", lambda x: _f(x["gradient_ratio_checkpointed"])),
        ("(forward + gradient) / forward without graph, no checkpoints", lambda x: _f(x["gradient_ratio_vs_nograd"])),
        (f"forward + gradient of {r['timing_steps']} steps, no checkpoints", lambda x: f"{_f(x['gradient_s'], 2)} s",
         lambda x: x["gradient_s"]),
        (f"peak resident memory growth per rank, gradient of {m['checkpointed_steps']} steps in checkpoint blocks "
         f"of {every}", memory),
        (f"same without checkpoints, {m['plain_steps']} steps", plain),
    ]
    for row in r["iterative"]:
        rows.append((f"{row['name']}: time per step; Krylov iterations per step; relative difference from MUMPS "
                     "(final state / sensor series / gradient)",
                     lambda x, name=row["name"]: iterative(x, name), lambda x, name=row["name"]: iterative_ms(x, name)))
    for row in r["bad_options"]:
        rows.append((f"a user's option that does not solve, {row['name']}: the first step raises",
                     lambda x, name=row["name"]: bad(x, name)))
    return rows


def _coastal_bay(r: dict) -> list[Row]:
    def solver(name: str) -> Callable[[dict], dict]:
        return lambda x: next(row for row in x["solvers"] if row["name"] == name)

    def step(x: dict, name: str) -> str:
        row = solver(name)(x)
        if "error" in row:
            return f"fails: {row['error'].splitlines()[0][:100]}"
        direct = row["options"] is None     # MUMPS, the model's default
        krylov = "" if direct else (f", {row['linear_per_newton_mean']:.0f} GMRES iterations per Newton "
                                    f"iteration (max {row['linear_per_newton_max']:.0f})")
        vs = "" if direct else f" ({_f(row['vs_mumps'])}× MUMPS's)"
        return (f"{_f(row['ms_per_step_nograd'], 0)} ms{vs}; Newton {_f(row['newton_mean'])} per step "
                f"(max {row['newton_max']}){krylov}")

    def iterative_gradient(x: dict) -> str:
        g = x["gradient"].get("iterative")
        if g is None:
            return "not run (the solver fails)"
        return f"{_f(g['ratio'])}; differs from MUMPS's gradient by {g['rel_diff_gradient']:.0e}"

    def long_memory(x: dict) -> str:
        m = x["memory"]["long"]
        if m["mib"] is None:
            return "not measured"
        return (f"{_f(m['mib'], 1)} MiB at h = {m['h']:g} / {m['h_coast']:g} m ({m['dofs']:,} dofs), "
                f"{_f(m['seconds'], 0)} s")

    def short_memory(x: dict) -> str:
        m = x["memory"]
        if m["main_checkpointed"]["mib"] is None:
            return "not measured"
        return (f"{_f(m['main_checkpointed']['mib'], 1)} / {_f(m['main_plain']['mib'], 1)} MiB "
                f"(one state {_f(m['main_state_mib'], 2)} MiB)")

    long, short, every = r["memory"]["long"], r["memory"]["main_checkpointed"], r["gradient"]["checkpoint_every"]
    rows: list[Row] = [
        ("mesh: vertices; P2–P1 dofs; size offshore / at the land; steps of dt",
         lambda x: f"{x['vertices']:,}; {x['dofs']:,}; {x['h']:g} / {x['h_coast']:g} m; {x['steps']} of "
                   f"{x['dt']:g} s"),
    ]
    for row in r["solvers"]:
        rows.append((f"{row['name']}: time per step, no graph; iterations",
                     lambda x, name=row["name"]: step(x, name),
                     lambda x, name=row["name"]: solver(name)(x).get("ms_per_step_nograd")))
    rows += [
        ("(forward + gradient) / forward without graph, DG0 drag field, MUMPS: no checkpoints",
         lambda x: _f(x["gradient"]["ratio"])),
        (f"same in checkpoint blocks of {every}", lambda x: _f(x["gradient"]["ratio_checkpointed"])),
        (f"same with {r['gradient'].get('iterative', {}).get('solver', 'the iterative solver')}, no checkpoints",
         iterative_gradient),
        (f"peak resident memory growth per rank, gradient of {long['steps']:,} steps in checkpoint blocks of "
         f"{long['checkpoint_every']} (MUMPS)", long_memory),
        (f"same at the main size, {short['steps']} steps, in blocks of {short['checkpoint_every']} / without "
         "checkpoints", short_memory),
    ]
    return rows


def _coastal_bay_sweep(r: dict) -> list[Row]:
    if not r.get("sweep"):
        return [("size sweep", lambda x: "not recorded (record with --sweep)")]

    def cell(x: dict, i: int) -> str:
        row = x["sweep"][i]
        if "error" in row:
            return f"fails: {row['error'].splitlines()[0][:100]}"
        krylov = "" if row["options"] is None else f", GMRES {row['linear_per_newton_mean']:.0f}"
        return f"{_f(row['ms_per_step_nograd'], 0)} ms (Newton {_f(row['newton_mean'])}{krylov})"

    return [(f"{row['dofs']:,} dofs (h = {row['h']:g} / {row['h_coast']:g} m), {row['solver']}",
             lambda x, i=i: cell(x, i)) for i, row in enumerate(r["sweep"])]


def _niederer(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """A row per recorded case (dx, dt, ranks) and code, ours first; the points across."""
    rows = [(case, run) for record in records for case in record["result"]["cases"] for run in case["runs"]]
    points = list(rows[0][1]["activation_ms"])

    def case_label(case: dict) -> str:
        ranks = f"{case['ranks']} rank{'s' if case['ranks'] > 1 else ''}"
        return f"{case['dx_mm']:g}, {case['dt_ms']:g}, {ranks} ({case['nodes']:,} nodes)"

    def gap(case: dict, run: dict) -> str:
        ours = case["runs"][0]["activation_ms"]
        if run is case["runs"][0]:
            return "—"
        return _f(max(abs(ours[p] - run["activation_ms"][p]) for p in points))

    header = (["dx (mm), dt (ms), ranks", "code"] + [f"{p} (ms)" for p in points]
              + ["largest |ours − theirs| (ms)", "time per step (ms)", "CG iterations per step",
                 "steps to the last activation"])
    body = [[case_label(case) if run is case["runs"][0] else "",
             "ours" if run["code"] == "deepnum-fem" else run["code"]]
            + [_f(run["activation_ms"][p]) for p in points]
            + [gap(case, run), _f(run["ms_per_step"], 1),
               f"{run['krylov_iterations_mean']:.1f}" if "krylov_iterations_mean" in run else "— (LU)",
               f"{run['steps']:,}"]
            for case, run in rows]
    return header, body


#: tables laid out by their own function from all the records: ``records -> (header, body)``
GRIDS: dict[str, Callable[[list[dict]], tuple[list[str], list[list[str]]]]] = {"niederer": _niederer}

def _cardiac_scale(r: dict) -> list[Row]:
    pcs = {"icc0": "CG + ICC(0) (block Jacobi on 2 ranks)", "gamg": "CG + GAMG", "two-level": "CG + TwoLevel"}

    def pc_row(name, label):
        def cell(x):
            p = x["preconditioners"][name]
            return (f"{_f(p['ms_per_step'], 1)} ms ({_f(p['cpu_ms_per_step'], 1)} CPU), "
                    f"{_f(p['cg_iterations_mean'], 1)} it")
        return (f"ours, {label}: time per step", cell, lambda x: x["preconditioners"][name]["ms_per_step"])

    def breakdown(x):
        b = x["preconditioners"][x["fastest_preconditioner"]]["breakdown"]
        return (f"{x['fastest_preconditioner']}: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in b.items()))

    def gradient(x):
        g = x["gradient"]
        return (f"{_f(g['ratio_vs_nograd'])} / {_f(g['ratio_checkpointed_vs_nograd'])} (blocks of "
                f"{g['checkpoint_every']}); against the forward recording the graph {_f(g['ratio'])} / "
                f"{_f(g['ratio_checkpointed'])}; {g['steps']} steps; the two gradients differ by "
                f"{g['gradient_checkpointed_relative_difference']:.0e}")

    return [
        ("nodes; tetrahedra (h mm)", lambda x: f"{x['nodes']:,}; {x['cells']:,} ({x['h_mm']})"),
        *(pc_row(name, label) for name, label in pcs.items()),
        ("fastest (wall time)", lambda x: x["fastest_preconditioner"]),
        ("fenicsx-beat, CG + GAMG: time per step",
         lambda x: f"{_f(x['peer']['fenicsx-beat']['ms_per_step'], 1)} ms "
                   f"({_f(x['peer']['fenicsx-beat']['cpu_ms_per_step'], 1)} CPU), "
                   f"{_f(x['peer']['fenicsx-beat']['cg_iterations_mean'], 1)} it",
         lambda x: x["peer"]["fenicsx-beat"]["ms_per_step"]),
        ("ours / fenicsx-beat per step, CG + GAMG (CPU time)",
         lambda x: f"{_f(x['peer']['ratio_ours_over_peer'])} ({_f(x['peer']['ratio_ours_over_peer_cpu'])})"),
        ("share of a step (fastest preconditioner)", breakdown),
        ("(forward + gradient) / forward without graph, without / with checkpoints", gradient),
    ]


TABLES: dict[str, Callable] = {
    "air_quality": _air_quality,
    "cardiac": _cardiac,
    "cardiac_scale": _cardiac_scale,
    "coastal_bay": _coastal_bay,
    "coastal_bay_sweep": _coastal_bay_sweep,
    "fem_operator": _fem_operator,
    "shallow_water": _shallow_water,
    "transport": _transport,
}


def load(name: str, ranks: int) -> dict:
    """The record of ``bench/NAME.py`` on ``ranks`` ranks (see ``bench/record.py``)."""
    return json.loads((RESULTS / f"{name}.n{ranks}.json").read_text(encoding="utf-8"))


def _paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph(text, text)


def _table(header: list[str], body: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["bench-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for i in range(len(header)):
        group += nodes.colspec(colwidth=3 if i == 0 else 2)
    head = nodes.thead()
    group += head
    for cells, parent in (([header], head), (body, None)):
        if parent is None:
            parent = nodes.tbody()
            group += parent
        for cells_of_row in cells:
            row = nodes.row()
            for cell in cells_of_row:
                entry = nodes.entry()
                entry += _paragraph(cell)
                row += entry
            parent += row
    return table


def conditions(record: dict) -> str:
    v = record["versions"]
    commit = record["commit"][:10] + (" with local changes" if record["dirty"] else "")
    load_avg = ", ".join(f"{x:.2f}" for x in record["load_average_at_start"])
    ranks = f"{record['ranks']} rank{'s' if record['ranks'] > 1 else ''}"
    return (f"{ranks}: {record['command']} — finished {record['date']}, "
            f"commit {commit}, {record['cpus']} CPUs (load average {load_avg} at the start), deepnum-fem "
            f"{v['deepnum_fem']}, DOLFINx {v['dolfinx']}, PETSc {v['petsc']}, torch {v['torch']}; "
            f"{record['wall_s']:.0f} s in all.")


class BenchTable(SphinxDirective):
    """``{bench-table} NAME``: the table of ``bench/NAME.py``'s recorded runs."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in TABLES and name not in GRIDS:
            raise self.error(f"bench-table: unknown benchmark {name!r}; known: {sorted([*TABLES, *GRIDS])}")
        bench, rank_counts = SOURCES.get(name, (name, RANKS))
        records = []
        for ranks in rank_counts:
            path = RESULTS / f"{bench}.n{ranks}.json"
            self.env.note_dependency(str(path))
            try:
                records.append(load(bench, ranks))
            except (OSError, ValueError) as e:
                raise self.error(f"bench-table {name}: cannot read {path}: {e}; record it with "
                                 f"python bench/record.py {bench}") from None
        try:
            if name in GRIDS:
                header, body = GRIDS[name](records)
                return [_table(header, body), *self._conditions(bench, records)]
            rows = TABLES[name](records[0]["result"])
            header = [""] + [f"{r['ranks']} rank{'s' if r['ranks'] > 1 else ''}" for r in records]
            body = [[label] + [cell(r["result"]) for r in records] for label, cell, *_ in rows]
            speedup = _speedup(rows, records)
            if speedup is not None:
                header.append(f"speed-up, {records[0]['ranks']} → {records[-1]['ranks']} ranks")
                body = [cells + [extra] for cells, extra in zip(body, speedup, strict=True)]
        except (KeyError, TypeError, IndexError, ZeroDivisionError) as e:
            raise self.error(f"bench-table {name}: the recorded JSON lacks what the table needs "
                             f"({type(e).__name__}: {e}); re-record with python bench/record.py {name}") from None
        return [_table(header, body), *self._conditions(bench, records)]

    @staticmethod
    def _conditions(bench: str, records: list[dict]) -> list[nodes.Node]:
        conds = nodes.bullet_list()
        for r in records:
            item = nodes.list_item()
            item += _paragraph(conditions(r))
            if r["log"]:
                item += nodes.literal_block(r["log"][0], r["log"][0])
            conds += item
        return [_paragraph(f"Conditions (from bench/results/{bench}.n*.json):"), conds]


def setup(app):
    app.add_directive("bench-table", BenchTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
