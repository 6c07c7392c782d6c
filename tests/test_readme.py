"""Every ```python block of README.md runs as written, serially and under ``mpirun -n 2`` (see
``code_blocks``). A block whose text says "serial only" is skipped under ``mpirun``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

import pytest
from code_blocks import NOT_RUN, Block, blocks, run

README = Path(__file__).resolve().parents[1] / "README.md"
_SERIAL_ONLY = re.compile(r"serial[- ]only", re.IGNORECASE)


def _blocks(text: str) -> list[Block]:
    return blocks(text, README)


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
    unknown = [f"line {b.first_line - 1}: ```{b.lang}" for b in blocks if b.lang not in NOT_RUN | {"python"}]
    assert not unknown, f"README.md blocks in no known language (run: python; not run: {sorted(NOT_RUN)}): {unknown}"


@pytest.mark.parametrize("block", PARAMS)
def test_readme_block(block: Block, mpi_tmp_path):
    """Run one block in a fresh namespace, in an empty directory shared by the ranks."""
    failure = run(block, README, mpi_tmp_path)
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
