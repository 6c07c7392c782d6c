"""The fenced code blocks of Markdown pages (README.md, docs/), and how a test runs one.

A block runs on its own, as a reader would paste it into a script: its text is compiled with the
page's name and line numbers (a traceback points at the page's line) and executed in a fresh
namespace. Serially that happens in a new interpreter, so that a block which forgets an import,
imports ``dolfinx`` before ``deepnum_fem``, or uses a submodule nobody imported fails as it would
for the reader. Under ``mpirun`` each rank executes the block in this interpreter (a rank does
not start Python processes). A deprecated deepnum-fem spelling in a block is an error: the pages
show the current API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from mpi4py import MPI

# A fence opens or closes a block: three or more backticks or tildes, at most three spaces in.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
#: Languages of the blocks that are not run.
NOT_RUN = {"bash", "console", "text"}
#: What deepnum_fem's deprecation warnings say (models/base.py ``deprecated``).
DEPRECATED = r".*is deprecated and will be removed in the next release"
_RUNNER = f"""
import sys, traceback, warnings
warnings.filterwarnings("error", message={DEPRECATED!r}, category=DeprecationWarning)
try:
    exec(compile(sys.stdin.read(), sys.argv[1], "exec"), {{"__name__": "__main__"}})
except BaseException as exc:
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    lang: str
    heading: str
    first_line: int  # page line number of the block's first line of code (1-based)
    source: str

    def padded(self) -> str:
        """The source behind blank lines, so that its line numbers are the page's."""
        return "\n" * (self.first_line - 1) + self.source


def blocks(text: str, path: Path) -> list[Block]:
    """All fenced blocks of a Markdown text, with the nearest heading above each (fences may be
    indented, as inside a list)."""
    found, heading, fence, lang, start, body = [], "", None, "", 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line.lstrip())
        if fence is None:
            if match:
                fence, lang, start, body = match.group(1), match.group(2).lower(), number + 1, []
            elif heading_match := HEADING.match(line):
                heading = heading_match.group(1)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not match.group(2):
            found.append(Block(lang, heading, start, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        raise ValueError(f"{path}:{start - 1}: a fenced block is never closed")
    return found


def run(block: Block, path: Path, cwd: Path) -> str | None:
    """Run ``block`` of page ``path`` in ``cwd``: None, or what went wrong (this rank's view)."""
    if MPI.COMM_WORLD.size == 1:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI", "HYDRA"))}
        proc = subprocess.run([sys.executable, "-c", _RUNNER, str(path)], input=block.padded(), cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)
        return None if proc.returncode == 0 else f"{proc.stdout[-2000:]}{proc.stderr[-6000:]}"
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=DEPRECATED, category=DeprecationWarning)
            exec(compile(block.padded(), str(path), "exec"), {"__name__": "__main__"})
    except Exception as exc:
        # Python's own traceback from the block's frame on (the page, line N): pytest's would
        # print the page from its first line down to the failing one.
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
    finally:
        os.chdir(previous)
    return None
