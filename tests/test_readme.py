"""Every ```python block of README.md runs as written, serially and under ``mpirun -n 2``.

Each block runs on its own, as a reader would paste it into a script: its text is compiled
with the README's name and line numbers (a traceback points at the README line) and executed
in a fresh namespace. Serially that happens in a new interpreter, so that a block which forgets
an import, imports ``dolfinx`` before ``deepnum_fem``, or uses a submodule nobody imported
(``dnf.geometry``) fails as it would for the reader, not pass because this process already
holds the module. Under ``mpirun`` each rank executes the block in this interpreter (a rank does
not start Python processes). A block whose text says "serial only" is skipped under ``mpirun``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from mpi4py import MPI

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# A fence opens or closes a block: three or more backticks or tildes, at most three spaces in.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
# Languages of the blocks that are not run; a fence in any other fails test_every_fence_is_classified.
_NOT_RUN = {"bash", "console", "text"}
_SERIAL_ONLY = re.compile(r"serial[- ]only", re.IGNORECASE)
# Executes the padded block read from stdin as README.md's code, in a fresh namespace; on an
# error prints the traceback from the block's frame on.
_RUNNER = """
import sys, traceback
try:
    exec(compile(sys.stdin.read(), sys.argv[1], "exec"), {"__name__": "__main__"})
except BaseException as exc:
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    lang: str
    heading: str
    first_line: int  # README line number of the block's first line of code (1-based)
    source: str

    def padded(self) -> str:
        """The source behind blank lines, so that its line numbers are the README's."""
        return "\n" * (self.first_line - 1) + self.source


def _blocks(text: str) -> list[Block]:
    """All fenced blocks of a Markdown text, with the nearest heading above each."""
    blocks, heading, fence, lang, start, body = [], "", None, "", 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, start, body = match.group(1), match.group(2).lower(), number + 1, []
            elif heading_match := _HEADING.match(line):
                heading = heading_match.group(1)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not match.group(2):
            blocks.append(Block(lang, heading, start, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        raise ValueError(f"{README}:{start - 1}: a fenced block is never closed")
    return blocks


def _params() -> list:
    params, seen = [], {}
    for block in _blocks(README.read_text(encoding="utf-8")):
        if block.lang != "python":
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", block.heading.lower()).strip("-") or "top"
        seen[slug] = seen.get(slug, 0) + 1
        marks = [pytest.mark.skip_in_parallel] if _SERIAL_ONLY.search(block.source) else []
        params.append(pytest.param(block, id=slug if seen[slug] == 1 else f"{slug}-{seen[slug]}", marks=marks))
    return params


PARAMS = _params()


def test_every_python_block_is_a_test():
    """A block fenced ```py, ``` Python or ```python3 would otherwise not be run."""
    text = README.read_text(encoding="utf-8")
    pythonish = re.findall(r"^ {0,3}(?:`{3,}|~{3,})\s*py", text, flags=re.IGNORECASE | re.MULTILINE)
    assert len(pythonish) == len(PARAMS), (
        f"README.md has {len(pythonish)} fences that look like Python, but {len(PARAMS)} blocks "
        "fenced exactly ```python are tested: fence every Python block as ```python"
    )


def test_every_fence_is_classified():
    """Every fenced block is run (```python) or declared not to be Python (```bash, ...)."""
    blocks = _blocks(README.read_text(encoding="utf-8"))
    unknown = [f"line {b.first_line - 1}: ```{b.lang}" for b in blocks if b.lang not in _NOT_RUN | {"python"}]
    assert not unknown, f"README.md blocks in no known language (run: python; not run: {sorted(_NOT_RUN)}): {unknown}"


def _run_in_new_interpreter(block: Block, cwd: Path) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI", "HYDRA"))}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(README)], input=block.padded(), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return None if proc.returncode == 0 else f"{proc.stdout[-2000:]}{proc.stderr[-6000:]}"


def _run_in_this_interpreter(block: Block, cwd: Path) -> str | None:
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        exec(compile(block.padded(), str(README), "exec"), {"__name__": "__main__"})
    except Exception as exc:
        # Python's own traceback from the block's frame on (README.md, line N): pytest's would
        # print the README from its first line down to the failing one.
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
    finally:
        os.chdir(previous)
    return None


@pytest.mark.parametrize("block", PARAMS)
def test_readme_block(block: Block, mpi_tmp_path):
    """Run one block in a fresh namespace, in an empty directory shared by the ranks."""
    if MPI.COMM_WORLD.size == 1:
        failure = _run_in_new_interpreter(block, mpi_tmp_path)
    else:
        failure = _run_in_this_interpreter(block, mpi_tmp_path)
    failures = MPI.COMM_WORLD.allgather(failure)
    if any(failures):
        where = [f" (rank {rank})" if len(failures) > 1 else "" for rank in range(len(failures))]
        pytest.fail("\n".join(f"the block at README.md:{block.first_line}{where[rank]} failed:\n{text}"
                              for rank, text in enumerate(failures) if text), pytrace=False)


@pytest.mark.skip_in_parallel   # starts an interpreter: not from inside an MPI rank
def test_every_dnf_name_in_the_readme_resolves(tmp_path):
    """``dnf.geometry.left_ventricle`` and the like, named anywhere in the README (the API table
    too), exist after a plain ``import deepnum_fem as dnf`` in a new interpreter."""
    names = sorted(set(re.findall(r"\bdnf(?:\.[A-Za-z_]\w*)+", README.read_text(encoding="utf-8"))))
    assert len(names) > 10
    check = ("import sys, deepnum_fem as dnf\nmissing = []\nfor name in sys.argv[1:]:\n"
             "    obj = dnf\n    try:\n        for part in name.split('.')[1:]:\n            obj = getattr(obj, part)\n"
             "    except AttributeError as e:\n        missing.append(f'{name}: {e}')\nprint('\\n'.join(missing))\n"
             "sys.exit(bool(missing))\n")
    proc = subprocess.run([sys.executable, "-c", check, *names], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    failure = None if proc.returncode == 0 else proc.stdout + proc.stderr[-3000:]
    assert failure is None, f"README names that do not resolve:\n{failure}"
