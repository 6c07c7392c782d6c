"""Release the UFL traversers that CPython 3.13.0's ``singledispatchmethod`` cache keeps alive."""

from __future__ import annotations

import functools
from collections.abc import Iterator

from ufl.corealg.dag_traverser import DAGTraverser


def _traverser_classes(cls: type = DAGTraverser) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _traverser_classes(sub)


def release_ufl_traversers() -> int:
    """Empty the per-instance caches of the ``singledispatchmethod``\\ s of UFL's traversers.

    CPython 3.13.0 caches each traverser's bound ``process`` in a WeakKeyDictionary keyed by the
    traverser, but the cached closure holds the traverser, so no entry ever dies (gh-127750).
    Each traverser keeps the expressions it visited, so every ``expand_derivatives`` and form
    compilation kept its forms' meshes, with their MPI communicators, alive to exit. Call this
    after UFL algorithms ran; where the cache does not exist (3.12, fixed 3.13 releases) it does
    nothing.

    Returns:
        How many traversers were released.
    """
    released = 0
    for cls in set(_traverser_classes()):
        for attr in vars(cls).values():
            if isinstance(attr, functools.singledispatchmethod):
                cache = getattr(attr, "_method_cache", None)   # None: caching switched off
                if cache:
                    released += len(cache)
                    cache.clear()
    return released
