#!/usr/bin/env bash
# Idempotent environment set-up for deepnum-fem.
#
# 1. Find a Python >= 3.12; where none exists, build CPython 3.13 from Debian's
#    python3.13 source package into a cache folder outside the repository.
# 2. Create .venv and install the package (editable) with its extras.
#
# A second run with everything in place only compares a stamp and returns.
# Environment: DNF_PYTHON (a Python to use), DNF_CACHE (cache folder),
# DNF_EXTRAS (pip extras, default "dolfinx,viz,dev"), DNF_FORCE_BUILD=1 (build CPython
# even when a suitable Python exists; used to check that route).
# Usage: scripts/bootstrap.sh [--python-only]   (--python-only: find or build Python, print it)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${DNF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepnum-fem}"
venv="$repo/.venv"
extras="${DNF_EXTRAS:-dolfinx,viz,dev}"

say() { printf '[deepnum-fem setup] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

python_ok() {  # usable interpreter of version >= 3.12 with venv
    "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
    local cand
    if [[ -n "${DNF_PYTHON:-}" ]]; then
        python_ok "$DNF_PYTHON" || die "DNF_PYTHON=$DNF_PYTHON is not a Python >= 3.12 with venv"
        echo "$DNF_PYTHON"; return
    fi
    if [[ "${DNF_FORCE_BUILD:-0}" != 1 ]]; then
        for cand in python3.13 python3.12 python3.14 python3; do
            if command -v "$cand" >/dev/null && python_ok "$cand"; then command -v "$cand"; return; fi
        done
        for cand in $(ls -d "$HOME"/.pyenv/versions/3.1[234]*/bin/python3 /usr/local/bin/python3.1[234] \
                      2>/dev/null | sort -rV); do
            if [[ -x "$cand" ]] && python_ok "$cand"; then echo "$cand"; return; fi
        done
    fi
    cand="$cache/python3.13/bin/python3.13"
    if [[ -x "$cand" ]] && python_ok "$cand"; then echo "$cand"; return; fi
    build_python >&2
    python_ok "$cand" || die "the CPython built into $cache/python3.13 does not run"
    echo "$cand"
}

build_python() {
    command -v apt-get >/dev/null || die "no Python >= 3.12 found and no apt-get to build one; install Python 3.12+ and set DNF_PYTHON"
    say "no Python >= 3.12 found: building CPython 3.13 from Debian's python3.13 source package (about 2-5 minutes)"
    local apt="$cache/apt" src="$cache/src" prefix="$cache/python3.13"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        > "$apt/sources.list"
    local aopt=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives")
    local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
    say "installing the build dependencies with apt-get"
    $sudo apt-get update -qq || say "apt-get update reported errors (an unrelated source?); installing anyway"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        build-essential dpkg-dev xz-utils pkg-config libssl-dev zlib1g-dev libffi-dev libsqlite3-dev \
        libbz2-dev liblzma-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev libexpat1-dev >/dev/null
    say "fetching the python3.13 source package (Debian 13)"
    apt-get "${aopt[@]}" update -qq
    (cd "$src" && apt-get "${aopt[@]}" source --download-only -qq python3.13)
    local orig; orig="$(ls "$src"/python3.13_*.orig.tar.* | head -n1)"
    [[ -f "$orig" ]] || die "apt-get source python3.13 produced no upstream tarball in $src"
    rm -rf "$src/build" && mkdir -p "$src/build"
    tar -xf "$orig" -C "$src/build" --strip-components=1
    say "configuring and compiling $(basename "$orig") into $prefix"
    (cd "$src/build" \
        && ./configure -q --prefix="$prefix" --enable-shared LDFLAGS="-Wl,-rpath,$prefix/lib" >/dev/null \
        && make -s -j"$(nproc)" >/dev/null 2>&1 \
        && make -s altinstall >/dev/null 2>&1) || die "building CPython failed in $src/build (rerun: make -C $src/build)"
    rm -rf "$src/build"
    say "built $("$prefix/bin/python3.13" --version)"
}

if [[ "${1:-}" == "--python-only" ]]; then find_python; exit 0; fi

# Stamp: the venv's interpreter version, pyproject.toml and the extras decide whether pip runs.
stamp_of() { { "$venv/bin/python" -c 'import sys; print(sys.version)'; echo "$extras"; cat "$repo/pyproject.toml"; } \
             | sha256sum | cut -d' ' -f1; }

if python_ok "$venv/bin/python"; then
    if [[ -f "$venv/.dnf-stamp" && "$(cat "$venv/.dnf-stamp")" == "$(stamp_of)" ]]; then
        exit 0   # warm: nothing to do
    fi
    say "updating the existing $venv ($("$venv/bin/python" --version 2>&1))"
else
    py="$(find_python)"
    say "using $py ($("$py" --version 2>&1)); creating $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
fi
say "installing deepnum-fem[$extras] into .venv (first time: a few minutes; torch is large)"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e "$repo[$extras]"
stamp_of > "$venv/.dnf-stamp"
say "ready: $("$venv/bin/python" -c 'import deepnum_fem as d; print("deepnum-fem", d.__version__)')"
