"""scripts/bootstrap.sh: the Debian mirror it would build Python from, and the interpreter probe."""

from __future__ import annotations

import functools
import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap.sh"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
pytestmark = pytest.mark.skip_in_parallel   # runs bash: not from inside MPI ranks

LAYOUTS = {
    "deb822-mirror": ({"sources.list.d/debian.sources": (
        "Types: deb deb-src\nURIs: http://mirror.example.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /etc/keys/mirror.gpg\n\n"
        "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")}, "http://mirror.example.org/debian /etc/keys/mirror.gpg"),
    "one-line-security-first": ({"sources.list": (
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "# deb http://old.example.org/debian bookworm main\n"
        f"deb [arch=amd64 signed-by={KEYRING}] http://ftp.example.net/debian/ bookworm main\n")},
        f"http://ftp.example.net/debian/ {KEYRING}"),
    "third-party-first": ({"sources.list.d/a-vendor.list": (
        "deb [signed-by=/usr/share/keyrings/vendor.gpg] https://packages.example.com/repo bookworm main\n"),
        "sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm\nComponents: main\n")},
        f"http://deb.example.org/debian {KEYRING}"),
    "none": ({}, f"http://deb.debian.org/debian {KEYRING}"),
}


def _bootstrap(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_debian_archive_comes_from_the_machines_apt_sources(tmp_path, layout):
    files, expected = LAYOUTS[layout]
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = _bootstrap("--debian-archive", env={"DNF_APT_ETC": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_an_explicit_mirror_wins(tmp_path):
    env = {"DNF_APT_ETC": str(tmp_path), "DNF_DEBIAN_MIRROR": "http://m.example/debian", "DNF_DEBIAN_KEYRING": "/k.gpg"}
    assert _bootstrap("--debian-archive", env=env).stdout.strip() == "http://m.example/debian /k.gpg"


def _keeps_instances_alive() -> bool:
    """The defect itself, in this interpreter: an instance survives once its
    singledispatchmethod has been called (CPython 3.13.0/3.13.1)."""
    class Probe:
        @functools.singledispatchmethod
        def f(self, x):
            return x

    p = Probe()
    p.f(1)
    ref = weakref.ref(p)
    del p
    gc.collect()
    return ref() is not None


def test_the_interpreter_probe_tells_a_leaking_python(tmp_path):
    proc = _bootstrap("--check-python", sys.executable)
    leaking = _keeps_instances_alive()
    assert (proc.returncode != 0) == leaking, (leaking, proc.stderr)
    if leaking:
        assert "keeps every instance alive" in proc.stderr
