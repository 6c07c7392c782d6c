"""Plane polygon maths for the coastal domains (numpy only): validated point arrays and
polygons, signed area, point-in-polygon, and the first pair of crossing or touching edges."""

from __future__ import annotations

import numpy as np

__all__ = ["as_points", "as_polygon", "first_crossing", "inside", "signed_area"]


def as_points(points, what: str) -> np.ndarray:
    """``points`` as a finite float array of shape ``(n, 2)``; ValueError naming ``what`` otherwise."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected {what} as an (n, 2) array of numbers, got {points!r} ({e})") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected {what} as an (n, 2) array of (x, y) points, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
        raise ValueError(f"expected finite coordinates in {what}, got {array[bad[0]].tolist()} at point {bad[0]}")
    return array


def as_polygon(points, what: str) -> np.ndarray:
    """A validated polygon ``(n, 2)``: >= 3 points, no repeated point, not all collinear (not yet simple)."""
    ring = as_points(points, what)
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]   # explicitly closed
    if len(ring) < 3:
        raise ValueError(f"expected {what} as a closed polyline of at least 3 distinct points, got {len(ring)}")
    _, first, counts = np.unique(ring, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        k = first[np.argmax(counts > 1)]
        raise ValueError(f"expected distinct points in {what}, got {ring[k].tolist()} (point {k}) "
                         f"{counts.max()} times")
    d = ring - ring[0]
    far = d[np.argmax((d * d).sum(axis=1))]
    if np.abs(d[:, 0] * far[1] - d[:, 1] * far[0]).max() <= 1e-12 * (far @ far):
        raise ValueError(f"expected {what} to enclose a non-zero area, got collinear points {ring.tolist()}")
    return ring


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a polygon ``(n, 2)``: positive when counter-clockwise."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(x @ np.roll(y, -1) - y @ np.roll(x, -1))


def inside(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Whether each of ``points`` ``(m, 2)`` is inside the polygon ``ring`` (even-odd rule)."""
    a, b = ring, np.roll(ring, -1, axis=0)
    x, y = points[:, None, 0], points[:, None, 1]
    straddles = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1


def first_crossing(rings: list[np.ndarray]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The first pair of edges ``((ring, edge), (ring, edge))`` that cross, touch or overlap; None if none.

    Edges adjacent in a ring share a vertex and only count when they fold back onto each other.
    """
    starts = np.concatenate(rings)
    ends = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    ring_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(rings)])
    edge_of = np.concatenate([np.arange(len(r)) for r in rings])
    size_of = np.array([len(r) for r in rings])[ring_of]

    def orient(p, q, r):   # sign of the cross product (q - p) x (r - p)
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                       - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    m = len(starts)
    chunk = max(1, 2_000_000 // m)
    for i0 in range(0, m, chunk):
        i = np.arange(i0, min(i0 + chunk, m))[:, None]
        p1, q1, p2, q2 = starts[i], ends[i], starts[None, :], ends[None, :]
        o1, o2, o3, o4 = orient(p1, q1, p2), orient(p1, q1, q2), orient(p2, q2, p1), orient(p2, q2, q1)
        collinear = (o1 == 0) & (o2 == 0)
        lo1, hi1 = np.minimum(p1, q1), np.maximum(p1, q1)
        lo2, hi2 = np.minimum(p2, q2), np.maximum(p2, q2)
        boxes = np.all((np.maximum(lo1, lo2) <= np.minimum(hi1, hi2)), axis=-1)
        hit = np.where(collinear, boxes, (o1 * o2 <= 0) & (o3 * o4 <= 0))
        same = ring_of[i] == ring_of[None, :]
        step = (edge_of[None, :] - edge_of[i]) % size_of[i]
        adjacent = same & ((step == 1) | (step == size_of[i] - 1))
        # Adjacent edges e -> e + 1 share a vertex: they overlap only if collinear and folding back.
        fold = adjacent & collinear & (np.sum((q1 - p1) * (q2 - p2), axis=-1) < 0)
        hit = np.where(adjacent, fold, hit) & (np.arange(m)[None, :] > i)
        if np.any(hit):
            a, b = np.argwhere(hit)[0]
            a += i0
            return (int(ring_of[a]), int(edge_of[a])), (int(ring_of[b]), int(edge_of[b]))
    return None

