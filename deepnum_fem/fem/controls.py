"""Controls of a residual: the Functions and Constants a torch tensor is written into."""

from __future__ import annotations

from petsc4py import PETSc

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl

from deepnum_fem.convert import n_owned, owned_array
from deepnum_fem.fem.forms import constant_derivatives, is_constant


class Control:
    """One control ``m`` of a form, with its compiled adjoint action.

    For a Function ``m`` in space ``M`` and a form ``F(u; m)`` with test function in ``V``,
    ``adjoint_action(lam)`` assembles ``(dF/dm)^T lam`` as a vector over ``M`` (owned
    entries, ghost contributions summed). For a Constant it assembles the rank's share of
    each component of ``(dF/dm)^T lam``.
    """

    def __init__(self, m, form: ufl.Form, lam: dolfinx.fem.Function | None, *,
                 jit_options: dict | None = None, form_compiler_options: dict | None = None):
        self.m = m
        self._opts = {"jit_options": jit_options, "form_compiler_options": form_compiler_options}
        self._lam = lam
        self._vec = None
        self._forms: list = []
        self._build(form, lam)

    # -- description -------------------------------------------------------------------
    @property
    def is_constant(self) -> bool:
        return is_constant(self.m)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the tensor that carries this control on this rank."""
        if self.is_constant:
            return tuple(self.m.value.shape)
        return (n_owned(self.m),)

    def describe(self) -> str:
        if self.is_constant:
            return f"Constant of shape {self.shape}"
        return f"Function {self.m.name!r} ({self.shape[0]} owned entries on this rank)"

    # -- values ------------------------------------------------------------------------
    def assign(self, values: np.ndarray) -> None:
        """Write float64 ``values`` (shape :attr:`shape`); Functions also refresh ghosts."""
        if self.is_constant:
            self.m.value[...] = values
        else:
            owned_array(self.m)[:] = values
            self.m.x.scatter_forward()

    # -- adjoint -----------------------------------------------------------------------
    def _build(self, form: ufl.Form, lam) -> None:
        if lam is None:  # a functional: derivative of a scalar form
            if self.is_constant:
                self._forms = [dolfinx.fem.form(f, **self._opts)
                               for f in constant_derivatives(form, self.m)]
            else:
                M = self.m.function_space
                self._forms = [dolfinx.fem.form(
                    ufl.derivative(form, self.m, ufl.TestFunction(M)), **self._opts)]
            return
        if self.is_constant:
            self._forms = [dolfinx.fem.form(ufl.action(f, lam), **self._opts)
                           for f in constant_derivatives(form, self.m)]
        else:
            M = self.m.function_space
            dFdm = ufl.derivative(form, self.m, ufl.TrialFunction(M))
            self._forms = [dolfinx.fem.form(ufl.action(ufl.adjoint(dFdm), lam), **self._opts)]

    def assemble(self) -> np.ndarray:
        """Assemble the compiled derivative: owned entries (Function) or local shares (Constant).

        With an adjoint ``lam`` set beforehand this is ``(dF/dm)^T lam``; for a functional it
        is ``dJ/dm``.
        """
        if self.is_constant:
            return np.array([dolfinx.fem.assemble_scalar(f) for f in self._forms],
                            dtype=np.float64).reshape(self.shape)
        if self._vec is None:
            self._vec = dolfinx.fem.petsc.create_vector(self.m.function_space)
        with self._vec.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self._vec, self._forms[0])
        self._vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        return self._vec.getArray(readonly=True).copy()

    def destroy(self) -> None:
        if self._vec is not None:
            self._vec.destroy()
            self._vec = None
