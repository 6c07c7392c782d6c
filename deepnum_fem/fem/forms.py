"""UFL manipulations for adjoints: derivatives with respect to Functions and Constants."""

from __future__ import annotations

import dolfinx.fem
import numpy as np
import ufl


def is_constant(m) -> bool:
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
