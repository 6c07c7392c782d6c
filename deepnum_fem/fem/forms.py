"""UFL manipulations for adjoints: derivatives with respect to Functions and Constants."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import numpy as np
import ufl


def is_constant(m) -> bool:
    """Whether ``m`` is a ``dolfinx.fem.Constant`` (a control whose tensor is its value)."""
    return isinstance(m, dolfinx.fem.Constant)


def constant_derivatives(form: ufl.Form, c: dolfinx.fem.Constant) -> list[ufl.Form]:
    """Forms ``dform/dc_j``, one per component ``j`` of the Constant ``c`` (row-major).

    UFL's ``derivative`` does not take Constants; ``c`` is wrapped in a ``ufl.variable``
    and each integrand differentiated with ``ufl.diff``.
    """
    var = ufl.variable(c)
    wrapped = ufl.replace(form, {c: var})
    shape = c.ufl_shape
    out = []
    for j in range(int(np.prod(shape, dtype=int))):
        index = tuple(int(i) for i in np.unravel_index(j, shape))
        integrals = []
        for itg in wrapped.integrals():
            d = ufl.diff(itg.integrand(), var)
            integrals.append(itg.reconstruct(integrand=d[index] if shape else d))
        out.append(ufl.Form(integrals))
    return out


def coefficients_and_constants(form) -> set:
    """The Functions and Constants a form or expression contains."""
    return set(ufl.algorithms.extract_coefficients(form)) | set(ufl.algorithms.analysis.extract_constants(form))


def depends_on(form: ufl.Form, objects) -> bool:
    """Whether ``form`` contains any of ``objects`` (Functions or Constants), after
    derivatives are evaluated (an unevaluated ``derivative(F, u)`` still names ``u``)."""
    present = coefficients_and_constants(ufl.algorithms.expand_derivatives(form))
    return any(o in present for o in objects)


class ValueSnapshot:
    """The values of some Functions and Constants (Python or C++ objects, e.g. a boundary
    condition's value) at the last :meth:`unchanged` call.

    What a cached matrix was assembled from: when none of them changed, the matrix is still
    right. Collective when a Function is among them (values may change on one rank only).
    """

    def __init__(self, objects, comm: MPI.Comm):
        self.objects, self.comm = list(objects), comm
        self._values: list[np.ndarray] | None = None
        self._collective = any(not hasattr(o, "value") for o in self.objects)

    def unchanged(self) -> bool:
        """Whether the values equal those of the previous call (False the first time); then
        remember the current ones."""
        values = [np.array(o.value if hasattr(o, "value") else o.x.array, copy=True) for o in self.objects]
        same = self._values is not None and all(
            np.array_equal(a, b) for a, b in zip(values, self._values, strict=True))
        if self._collective:
            same = self.comm.allreduce(same, op=MPI.LAND)
        self._values = values
        return same

    def forget(self) -> None:
        self._values = None
