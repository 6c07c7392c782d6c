#!/usr/bin/env bash
# Idempotent environment set-up for deepnum-fem.
#
# 1. Find a Python >= 3.12; where none exists, build CPython 3.13 from Debian's
#    python3.13 source package into a cache folder outside the repository.
# 2. Create .venv and install the package (editable) with its extras.
#
# A Python whose functools.singledispatchmethod keeps its instances alive (CPython 3.13.0 and
# 3.13.1, gh-127750: UFL's traversers, and through them meshes and MPI communicators, would never
# be freed) is skipped when searching, and an existing .venv on one is rebuilt.
# A second run with everything in place only compares a stamp and returns.
# Environment: DNF_PYTHON (a Python to use; a leaking one is used with a warning),
# DNF_CACHE (cache folder), DNF_EXTRAS (pip extras, default "dolfinx,viz,dev,docs"),
# DNF_FORCE_BUILD=1 (build CPython even when a suitable Python exists; used to check that route),
# DNF_DEBIAN_MIRROR (the Debian archive URI to fetch the python3.13 source package from, e.g.
# http://mirror.example.org/debian; by default the URI of the first Debian (non-security) `deb`
# entry in the machine's apt sources, else http://deb.debian.org/debian), DNF_DEBIAN_KEYRING
# (its keyring; default that entry's signed-by, else /usr/share/keyrings/debian-archive-keyring.gpg),
# DNF_APT_ETC (the apt folder whose sources are read, default /etc/apt).
# Usage: scripts/bootstrap.sh [--python-only | --debian-archive | --check-python PYTHON]
#   --python-only: find or build Python, print it; --debian-archive: print the URI and keyring the
#   build would fetch Debian's sources from; --check-python: exit 1 (saying why) if PYTHON is unusable
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${DNF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepnum-fem}"
venv="$repo/.venv"
extras="${DNF_EXTRAS:-dolfinx,viz,dev,docs}"

say() { printf '[deepnum-fem setup] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

python_ok() {  # usable interpreter of version >= 3.12 with venv
    "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

# Behaviour probe for gh-127750 (CPython 3.13.0, 3.13.1): singledispatchmethod's cache, a
# WeakKeyDictionary whose values (the bound methods) reference their keys, keeps every instance
# alive. Fails where an instance whose singledispatchmethod was called survives gc.
python_sound() {
    "$1" -I -c 'import functools, gc, sys, weakref
class C:
    @functools.singledispatchmethod
    def f(self, x): return x
c = C(); c.f(1); r = weakref.ref(c); del c; gc.collect()
sys.exit(r() is not None)' >/dev/null 2>&1
}
unsound_why="its functools.singledispatchmethod keeps every instance alive (the CPython 3.13.0/3.13.1 leak, gh-127750; meshes and MPI communicators would never be freed)"

skipped=" "
python_usable() {  # python_ok and python_sound; says once per interpreter why a leaking one is skipped
    python_ok "$1" || return 1
    python_sound "$1" && return 0
    local real; real="$("$1" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)"
    if [[ "$skipped" != *" $real "* ]]; then
        say "skipping $1 ($("$1" --version 2>&1)): $unsound_why"
        skipped+="$real "
    fi
    return 1
}

find_python() {
    local cand
    if [[ -n "${DNF_PYTHON:-}" ]]; then
        python_ok "$DNF_PYTHON" || die "DNF_PYTHON=$DNF_PYTHON is not a Python >= 3.12 with venv"
        python_sound "$DNF_PYTHON" || say "warning: using DNF_PYTHON=$DNF_PYTHON all the same, but $unsound_why"
        echo "$DNF_PYTHON"; return
    fi
    if [[ "${DNF_FORCE_BUILD:-0}" != 1 ]]; then
        for cand in python3.13 python3.12 python3.14 python3; do
            if command -v "$cand" >/dev/null && python_usable "$(command -v "$cand")"; then
                command -v "$cand"; return
            fi
        done
        for cand in $(ls -d "$HOME"/.pyenv/versions/3.1[234]*/bin/python3 /usr/local/bin/python3.1[234] \
                      2>/dev/null | sort -rV); do
            if [[ -x "$cand" ]] && python_usable "$cand"; then echo "$cand"; return; fi
        done
    fi
    cand="$cache/python3.13/bin/python3.13"
    if [[ -x "$cand" ]] && python_usable "$cand"; then echo "$cand"; return; fi
    build_python >&2
    python_ok "$cand" || die "the CPython built into $cache/python3.13 does not run"
    python_sound "$cand" || die "the CPython built into $cache/python3.13 fails the leak probe: $unsound_why"
    echo "$cand"
}

# The Debian archive of the machine's apt sources: for each enabled `deb` entry of a Debian
# suite (codename or alias, optionally -updates/-backports/-proposed-updates; not -security)
# with component main, in apt's file order, prints "URI<TAB>SIGNED-BY" (SIGNED-BY may be empty).
debian_archive_entries() {
    local etc="${DNF_APT_ETC:-/etc/apt}" f files=()
    [[ -f "$etc/sources.list" ]] && files+=("$etc/sources.list")
    for f in "$etc"/sources.list.d/*; do
        case "$f" in *.list|*.sources) [[ -f "$f" ]] && files+=("$f") ;; esac
    done
    (( ${#files[@]} )) || return 0
    awk '
    function debian(suites, comps,   n, i, a, m) {
        n = split(comps, a, /[ \t,]+/); m = 0
        for (i = 1; i <= n; i++) if (a[i] == "main") m = 1
        if (!m) return 0
        n = split(suites, a, /[ \t]+/)
        for (i = 1; i <= n; i++)
            if (a[i] ~ /^(buzz|rex|bo|hamm|slink|potato|woody|sarge|etch|lenny|squeeze|wheezy|jessie|stretch|buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable|experimental)(-updates|-backports|-backports-sloppy|-proposed-updates)?$/)
                return 1
        return 0
    }
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    function stanza_end(   n, a, i, isdeb) {  # deb822: one stanza read
        n = split(f["types"], a, /[ \t]+/); isdeb = 0
        for (i = 1; i <= n; i++) if (a[i] == "deb") isdeb = 1
        if (isdeb && tolower(f["enabled"]) != "no" && debian(f["suites"], f["components"])) {
            split(trim(f["uris"]), a, /[ \t]+/)
            if (a[1] != "" && a[1] !~ /^cdrom:/) print a[1] "\t" (embedded ? "" : trim(f["signed-by"]))
        }
        delete f; key = ""; embedded = 0
    }
    { sub(/\r$/, "") }
    FNR == 1 { if (deb822) stanza_end(); deb822 = (FILENAME ~ /\.sources$/) }
    deb822 {
        if ($0 ~ /^[ \t]*$/) { stanza_end(); next }
        if ($0 ~ /^#/) next
        if ($0 ~ /^[ \t]/) { if (key == "signed-by") embedded = 1; next }   # continuation line
        i = index($0, ":"); if (!i) next
        key = tolower(trim(substr($0, 1, i - 1))); f[key] = trim(substr($0, i + 1))
        next
    }
    {   # one-line: deb [options] uri suite [component...]
        line = $0; sub(/#.*/, "", line); opts = ""
        if (match(line, /\[[^]]*\]/)) {
            opts = substr(line, RSTART + 1, RLENGTH - 2)
            line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
        }
        n = split(trim(line), w, /[ \t]+/)
        if (n < 4 || w[1] != "deb" || w[2] ~ /^cdrom:/) next
        comps = ""; for (i = 4; i <= n; i++) comps = comps " " w[i]
        if (!debian(w[3], comps)) next
        key = ""; m = split(opts, o, /[ \t]+/)
        for (i = 1; i <= m; i++) if (tolower(o[i]) ~ /^signed-by=/) key = substr(o[i], 11)
        print w[2] "\t" key
    }
    END { if (deb822) stanza_end() }
    ' "${files[@]}"
}

# "URI KEYRING" to fetch Debian 13's sources from: DNF_DEBIAN_MIRROR, else the first Debian entry
# of the apt sources whose keyring is Debian's (or unset), else the first Debian entry, else
# deb.debian.org. A signed-by that is not a file (an embedded key, fingerprints) gives the default.
debian_archive() {
    local default="/usr/share/keyrings/debian-archive-keyring.gpg" uri key first=""
    [[ -f "$default" || ! -f "${default%.gpg}.pgp" ]] || default="${default%.gpg}.pgp"
    if [[ -n "${DNF_DEBIAN_MIRROR:-}" ]]; then
        echo "$DNF_DEBIAN_MIRROR ${DNF_DEBIAN_KEYRING:-$default}"; return
    fi
    while IFS=$'\t' read -r uri key; do
        key="${key//[ ,]/,}"; [[ "$key" == /* ]] || key=""
        if [[ -z "$key" || "$key" == *debian-archive-* ]]; then
            echo "$uri ${DNF_DEBIAN_KEYRING:-${key:-$default}}"; return
        fi
        [[ -n "$first" ]] || first="$uri ${DNF_DEBIAN_KEYRING:-$key}"
    done < <(debian_archive_entries)
    echo "${first:-http://deb.debian.org/debian ${DNF_DEBIAN_KEYRING:-$default}}"
}

build_python() {
    command -v apt-get >/dev/null || die "no sound Python >= 3.12 found and no apt-get to build one; install Python 3.12+ (not 3.13.0/3.13.1) and set DNF_PYTHON"
    local why="no sound Python >= 3.12 found"; [[ "${DNF_FORCE_BUILD:-0}" != 1 ]] || why="DNF_FORCE_BUILD=1"
    say "$why: building CPython 3.13 from Debian's python3.13 source package (about 2-5 minutes)"
    local apt="$cache/apt" src="$cache/src" prefix="$cache/python3.13" uri key
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$src"
    read -r uri key < <(debian_archive)
    echo "deb-src [signed-by=$key] $uri trixie main" > "$apt/sources.list"
    local aopt=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives")
    local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
    say "installing the build dependencies with apt-get"
    $sudo apt-get update -qq || say "apt-get update reported errors (an unrelated source?); installing anyway"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        build-essential dpkg-dev xz-utils pkg-config libssl-dev zlib1g-dev libffi-dev libsqlite3-dev \
        libbz2-dev liblzma-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev libexpat1-dev >/dev/null
    say "fetching the python3.13 source package (Debian 13) from $uri (keyring $key; set DNF_DEBIAN_MIRROR to change)"
    local hint="is $uri reachable, and does it carry trixie's sources? set DNF_DEBIAN_MIRROR to another Debian mirror"
    apt-get "${aopt[@]}" update -qq || die "apt-get update failed for 'deb-src $uri trixie main' ($hint)"
    (cd "$src" && apt-get "${aopt[@]}" source --download-only -qq python3.13) \
        || die "apt-get source python3.13 failed from 'deb-src $uri trixie main' ($hint)"
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

case "${1:-}" in
    --python-only) find_python; exit 0 ;;
    --debian-archive) debian_archive; exit 0 ;;
    --check-python) python_ok "$2" || die "$2 is not a Python >= 3.12 with venv"
                    python_sound "$2" || die "$2: $unsound_why"; exit 0 ;;
esac

# Stamp: the venv's interpreter version, pyproject.toml and the extras decide whether pip runs.
stamp_of() { { "$venv/bin/python" -c 'import sys; print(sys.version)'; echo "$extras"; cat "$repo/pyproject.toml"; } \
             | sha256sum | cut -d' ' -f1; }

# An existing .venv on a leaking interpreter is rebuilt on a sound one (once: the new one passes),
# unless DNF_PYTHON names a leaking interpreter itself (then it is kept, with a warning).
reuse=0
if python_ok "$venv/bin/python"; then
    reuse=1
    if ! python_sound "$venv/bin/python"; then
        if [[ -n "${DNF_PYTHON:-}" ]] && ! python_sound "$DNF_PYTHON"; then
            say "warning: keeping $venv on $("$venv/bin/python" --version 2>&1) (DNF_PYTHON is set), but $unsound_why"
        else
            say "rebuilding $venv: its $("$venv/bin/python" --version 2>&1) ($(readlink -f "$venv/bin/python")) fails the leak probe: $unsound_why"
            skipped+="$(readlink -f "$venv/bin/python") "   # said once
            reuse=0
        fi
    fi
fi
if (( reuse )); then
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
"$venv/bin/python" -m pip install -q -e "${repo}[$extras]"
stamp_of > "$venv/.dnf-stamp"
say "ready: $("$venv/bin/python" -c 'import deepnum_fem as d; print("deepnum-fem", d.__version__)')"
