"""Controls of a residual: the Functions and Constants a torch tensor is written into."""

from __future__ import annotations

from petsc4py import PETSc

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl

from deepnum_fem.fem.dofs import n_owned, owned_array
from deepnum_fem.fem.forms import ValueSnapshot, coefficients_and_constants, constant_derivatives, is_constant


class Control:
    """One control ``m`` of a form, with its compiled adjoint action.

    For a Function ``m`` in space ``M`` and a form ``F(u; m)`` with test function in ``V``,
    ``adjoint_action(lam)`` assembles ``(dF/dm)^T lam`` as a vector over ``M`` (owned
    entries, ghost contributions summed). For a Constant it assembles the rank's share of
    each component of ``(dF/dm)^T lam``.
    """

    def __init__(self, m, form: ufl.Form, lam: dolfinx.fem.Function | None, *, fixed_unless=(),
                 comm=None, jit_options: dict | None = None, form_compiler_options: dict | None = None):
        self.m = m
        self._opts = {"jit_options": jit_options, "form_compiler_options": form_compiler_options}
        self._lam = lam
        self._vec = None
        self._forms: list = []
        self._matrix = None          # dF/dm assembled, when it depends on none of fixed_unless
        self._matrix_form = None
        self._matrix_inputs: ValueSnapshot | None = None
        self._build(form, lam, fixed_unless, comm)

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
    def _build(self, form: ufl.Form, lam, fixed_unless, comm) -> None:
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
            inputs = coefficients_and_constants(ufl.algorithms.expand_derivatives(dFdm))
            if fixed_unless and not any(o in inputs for o in [self.m, *fixed_unless]):
                # F is affine in m with a coefficient free of u and m: (dF/dm)^T lam = B^T lam
                self._matrix_form = dolfinx.fem.form(dFdm, **self._opts)
                self._matrix_inputs = ValueSnapshot(inputs, comm)
            else:
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
        if self._matrix_form is not None:
            self.matrix().multTranspose(self._lam.x.petsc_vec, self._vec)
            return self._vec.getArray(readonly=True).copy()
        with self._vec.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self._vec, self._forms[0])
        self._vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        return self._vec.getArray(readonly=True).copy()

    @property
    def is_fixed_matrix(self) -> bool:
        """Whether ``dF/dm`` is a matrix free of ``u``, ``m`` and networks (see :meth:`matrix`)."""
        return self._matrix_form is not None

    @property
    def matrix_inputs(self) -> list:
        """The Functions and Constants :meth:`matrix` depends on."""
        return [] if self._matrix_inputs is None else self._matrix_inputs.objects

    def matrix(self) -> PETSc.Mat:
        """``dF/dm`` (rows: test space, columns: ``m``'s space), re-assembled only when its
        inputs changed since the last call (collective)."""
        if self._matrix is None:
            self._matrix = dolfinx.fem.petsc.create_matrix(self._matrix_form)
        if not self._matrix_inputs.unchanged():
            self._matrix.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(self._matrix, self._matrix_form)
            self._matrix.assemble()
        return self._matrix

    def destroy(self) -> None:
        if self._vec is not None:
            self._vec.destroy()
            self._vec = None
        if self._matrix is not None:
            self._matrix.destroy()
            self._matrix = None
