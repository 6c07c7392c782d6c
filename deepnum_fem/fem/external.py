"""Pointwise models inside UFL forms, below the torch layer: the UFL node and its lowering.

A network (or any pointwise model) enters a form as an :class:`MLOperator` node, a
``ufl.ExternalOperator`` that carries a *model*. Before a form is compiled, :func:`lower` replaces
each node by the model's linearisation at its current state, ``N0 + Σ_j D_j : (q_j - Q0_j)``,
built from quadrature-space Functions that the model fills. Nothing here knows which framework
evaluates the model: it is reached through the small protocol :class:`PointwiseModel` (values
and derivatives at points into Functions; the parameter side, a VJP, lives with the framework,
in :mod:`deepnum_fem.ops.ml_operator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import dolfinx.fem
import ufl
from ufl.algorithms.analysis import extract_type

__all__ = ["MLOperator", "PointwiseModel", "find_ml_operators", "lower"]


class PointwiseModel(Protocol):
    """What the FEM layer needs of a model at quadrature points."""

    #: A number made in the same order on every rank (a rank-independent order for collective work).
    serial: int
    #: The quadrature degree of the integrals that contain the model.
    degree: int
    #: The UFL operands (coefficients and expressions of them).
    operands: Sequence[ufl.core.expr.Expr]
    #: The value at the quadrature points, a quadrature-space Function.
    N0: dolfinx.fem.Function

    @property
    def data_functions(self) -> list[dolfinx.fem.Function]:
        """Every Function the linearisation reads (values, operands, derivatives)."""

    def surrogate(self) -> ufl.core.expr.Expr:
        """The linearisation at the stored state, as a UFL expression of the operands."""

    def update(self, *, force: bool = False) -> None:
        """Evaluate values and derivatives at the current operands into the data Functions
        (collective: an error on any rank is raised on all)."""


class MLOperator(ufl.ExternalOperator):
    """The UFL node of a network at quadrature points; its evaluation lives in :attr:`model`."""

    def __init__(self, *operands, function_space, derivatives=None, argument_slots=(), model=None):
        super().__init__(*operands, function_space=function_space, derivatives=derivatives,
                         argument_slots=argument_slots)
        #: The model that evaluates the node (values and derivatives at the quadrature points).
        self.model: PointwiseModel = model

    def _ufl_expr_reconstruct_(self, *operands, function_space=None, derivatives=None,
                               argument_slots=None, add_kwargs={}):  # noqa: B006 (UFL's signature)
        return super()._ufl_expr_reconstruct_(
            *operands, function_space=function_space, derivatives=derivatives,
            argument_slots=argument_slots, add_kwargs={"model": self.model, **add_kwargs})


def find_ml_operators(form: ufl.Form) -> list[MLOperator]:
    """The ml_operator nodes of ``form``, in the order their models were made (the same on every rank)."""
    return sorted(extract_type(form, MLOperator), key=lambda n: n.model.serial)


def lower(form: ufl.Form) -> tuple[ufl.Form, list[PointwiseModel]]:
    """Replace every ml_operator by its linearisation and fix the quadrature degree of the
    integrals that contain one. Returns the new form and the distinct models."""
    nodes = find_ml_operators(form)
    if not nodes:
        return form, []
    models = list({n.model.serial: n.model for n in nodes}.values())
    lowered = ufl.replace(form, {n: n.model.surrogate() for n in nodes})
    integrals = []
    for itg in lowered.integrals():
        present = set(ufl.algorithms.extract_coefficients(itg.integrand()))
        degrees = {m.degree for m in models if m.N0 in present}
        if len(degrees) > 1:
            raise ValueError(f"ml_operators of quadrature degrees {sorted(degrees)} meet in one integral; "
                             "use one degree per integral")
        if degrees:
            degree = degrees.pop()
            meta = dict(itg.metadata())
            if meta.get("quadrature_degree", degree) != degree:
                raise ValueError(f"an integral with an ml_operator of quadrature degree {degree} asks for "
                                 f"quadrature_degree={meta['quadrature_degree']}")
            meta["quadrature_degree"] = degree
            itg = itg.reconstruct(metadata=meta)
        integrals.append(itg)
    return ufl.Form(integrals), models


