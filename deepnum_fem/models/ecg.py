"""Pseudo-ECG of a :class:`~deepnum_fem.models.Monodomain` model: electrode potentials and the
standard leads, differentiable in the potential and in the model's conductivity controls.

In an unbounded homogeneous volume conductor of conductivity ``σ_b`` around the tissue, the
extracellular potential at an electrode ``x_e`` is (Plonsey & Barr, *Bioelectricity*, ch. 8)::

    φ(x_e) = 1 / (4π σ_b) ∫ σ_i ∇V · ∇(1 / |x - x_e|) dx,

which, with the monodomain's ``D = σ / (χ C_m)``, is ``∫ D ∇v · ∇(1/r) dx`` up to a constant
factor that this module leaves out (so a potential is in ``v``'s units times mm). The torso's
boundaries and inhomogeneities are ignored: this is the infinite-medium approximation, a
statement about the model, not a bug. Electrodes must lie outside the tissue (``1/r`` is
singular at them).

``φ`` is linear in ``v``: ``φ = parallel.sum(W @ v_owned)`` with ``W`` of shape
``(n_electrodes, n_owned)``. ``W`` depends on ``D`` (so on the controls ``scale``, ``D_l``
and ``D_t``); :meth:`PseudoECG.weights` returns it as a tensor differentiable in them (for
``D_l`` and ``D_t``, each rank's gradient is its share, as for every Constant control:
``dnf.parallel.allreduce_gradients`` sums them). Its
backward is one batched scalar assembly: ``d<Ŵ, W(m)>/dm`` is the derivative of the
functional ``Σ_e ∫ D(m) ∇ŵ_e · ∇(1/r_e) dx``, with ``ŵ_e`` the P1 field whose owned dofs
are ``Ŵ``'s row ``e``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dolfinx.fem
import dolfinx.geometry
import dolfinx.la
import numpy as np
import torch
import ufl

from deepnum_fem import parallel
from deepnum_fem.convert import n_owned
from deepnum_fem.errors import ShapeError
from deepnum_fem.ops.functional import functional

__all__ = ["PseudoECG", "LIMB_LEADS", "PRECORDIAL"]

#: Limb leads as (positive, negative) electrodes (Einthoven).
LIMB_LEADS = {"I": ("LA", "RA"), "II": ("LL", "RA"), "III": ("LL", "LA")}
#: The precordial electrodes, each measured against Wilson's central terminal (RA + LA + LL) / 3.
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")


class PseudoECG:
    """Electrode potentials and leads of a monodomain model (see the module docstring).

    Args:
        model: A :class:`~deepnum_fem.models.Monodomain`.
        electrodes: Positions (mm, outside the tissue): a mapping ``name -> (x, y[, z])``
            (names ``RA``, ``LA``, ``LL``, ``V1``–``V6`` give the standard leads of
            :meth:`leads`) or an array ``(n, d)`` (electrodes ``E0``, ``E1``, ...).

    Collective: every rank builds it with the same electrodes.
    """

    def __init__(self, model, electrodes: Mapping[str, Sequence[float]] | np.ndarray):
        self.model = model
        d = model.mesh.geometry.dim
        if isinstance(electrodes, Mapping):
            self.names = tuple(str(k) for k in electrodes)
            points = [np.asarray(v, dtype=np.float64) for v in electrodes.values()]
        else:
            points = list(np.asarray(electrodes, dtype=np.float64).reshape(-1, d) if np.size(electrodes) else [])
            self.names = tuple(f"E{i}" for i in range(len(points)))
        if not points or any(p.shape != (d,) for p in points):
            raise ShapeError(f"PseudoECG: electrodes of {d} coordinates each expected, got "
                             f"{[tuple(p.shape) for p in points] or 'none'}")
        self.points = np.array(points)
        self._check_outside()
        V, D = model.V, model.D
        x = ufl.SpatialCoordinate(model.mesh)
        self._electrode = dolfinx.fem.Constant(model.mesh, np.zeros(d))
        r = ufl.sqrt(ufl.inner(x - self._electrode, x - self._electrode))
        phi = ufl.TestFunction(V)
        self._rows = dolfinx.fem.form(ufl.inner(D * ufl.grad(phi), ufl.grad(1.0 / r)) * ufl.dx)
        self._w_hat = dolfinx.fem.Function(V, name="weights_cotangent")
        self._controls = dict(model.control_objects)
        form = ufl.inner(D * ufl.grad(self._w_hat), ufl.grad(1.0 / r)) * ufl.dx
        self._pairing = functional(form, [self._w_hat, *self._controls.values(), self._electrode])
        self.n = model.n

    def _check_outside(self) -> None:
        mesh = self.model.mesh
        tree = dolfinx.geometry.bb_tree(mesh, mesh.topology.dim)
        pts = np.zeros((len(self.points), 3))
        pts[:, : self.points.shape[1]] = self.points
        cells = dolfinx.geometry.compute_colliding_cells(mesh, dolfinx.geometry.compute_collisions_points(tree, pts),
                                                         pts)
        inside = np.array([len(cells.links(i)) > 0 for i in range(len(pts))])
        inside = mesh.comm.allreduce(inside.astype(np.int64)) > 0
        if inside.any():
            bad = [f"{self.names[i]} at {tuple(self.points[i])}" for i in np.flatnonzero(inside)]
            raise ValueError(f"PseudoECG: electrodes must lie outside the tissue (1/r is singular there); "
                             f"inside: {', '.join(bad)}")

    # -- weights --------------------------------------------------------------------------
    def _set_controls(self, values: Sequence[torch.Tensor]) -> None:
        for obj, value in zip(self._controls.values(), values, strict=True):
            array = value.detach().to("cpu", torch.float64).numpy()
            if isinstance(obj, dolfinx.fem.Constant):
                obj.value = float(array)
            else:
                obj.x.array[: n_owned(obj)] = array
                obj.x.scatter_forward()

    def _assemble(self) -> np.ndarray:
        rows = np.empty((len(self.points), self.n))
        for i, p in enumerate(self.points):
            self._electrode.value[:] = p
            vec = dolfinx.fem.assemble_vector(self._rows)
            vec.scatter_reverse(dolfinx.la.InsertMode.add)
            rows[i] = vec.array[: self.n]
        return rows

    def weights(self, **controls: torch.Tensor | None) -> torch.Tensor:
        """``W`` (``(n_electrodes, n_owned)``, float64, CPU) with the given controls (by name,
        as the model's step takes them; the model's current values for those not given),
        differentiable in each given tensor that requires grad. Collective."""
        self.model._check_control_names(controls, "pseudo_ecg weights")
        like = torch.zeros((), dtype=torch.float64)
        values = self.model._control_values(controls, like)
        tensors = [values[name] for name in self._controls]
        for name, t in zip(self._controls, tensors, strict=True):
            expected = tuple(self.model.control(name).shape)
            if tuple(t.shape) != expected:
                raise ShapeError(f"PseudoECG.weights: control {name!r} of shape {expected} expected, "
                                 f"got {tuple(t.shape)}")
        return _Weights.apply(self, *tensors)

    def potentials(self, traces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Electrode potentials ``(..., n_electrodes)`` of potentials ``traces`` ``(..., n_owned)``
        (``weights`` from :meth:`weights`, else the model's current controls); the same on
        every rank. Collective."""
        W = self.weights() if weights is None else weights
        return parallel.sum(traces @ W.to(traces).T, self.model.comm)

    # -- leads ----------------------------------------------------------------------------
    @property
    def lead_names(self) -> tuple[str, ...]:
        """The leads :meth:`leads` returns: the limb leads I, II, III and the precordial leads
        V1–V6 whose electrodes are present (precordial ones need RA, LA and LL)."""
        have = set(self.names)
        names = [lead for lead, pair in LIMB_LEADS.items() if set(pair) <= have]
        if {"RA", "LA", "LL"} <= have:
            names += [v for v in PRECORDIAL if v in have]
        return tuple(names)

    def leads(self, potentials: torch.Tensor) -> torch.Tensor:
        """The leads ``(..., n_leads)`` (order of :attr:`lead_names`) from electrode potentials
        ``(..., n_electrodes)``; differences of potentials, so the left-out constant factor
        scales them all alike."""
        if potentials.shape[-1] != len(self.names):
            raise ShapeError(f"PseudoECG.leads: potentials with a last axis of {len(self.names)} electrodes "
                             f"expected, got shape {tuple(potentials.shape)}")
        if not self.lead_names:
            raise ValueError(f"PseudoECG.leads: no standard lead can be formed from electrodes {self.names}; "
                             "name them RA, LA, LL and V1-V6")
        at = {name: potentials[..., i] for i, name in enumerate(self.names)}
        out = []
        for lead in self.lead_names:
            if lead in LIMB_LEADS:
                plus, minus = LIMB_LEADS[lead]
                out.append(at[plus] - at[minus])
            else:
                out.append(at[lead] - (at["RA"] + at["LA"] + at["LL"]) / 3.0)
        return torch.stack(out, dim=-1)


class _Weights(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ecg: PseudoECG, *controls: torch.Tensor) -> torch.Tensor:
        ecg._set_controls(controls)
        ctx.ecg = ecg
        ctx.save_for_backward(*controls)
        return torch.from_numpy(ecg._assemble())

    @staticmethod
    def backward(ctx, grad_W: torch.Tensor):
        ecg = ctx.ecg
        controls = ctx.saved_tensors
        wanted = ctx.needs_input_grad[1:]
        out: list[torch.Tensor | None] = [None] * len(controls)
        # every rank takes this branch alike: needs_input_grad is the same on every rank
        if any(wanted):
            leaves = [c.detach().to("cpu", torch.float64).requires_grad_(w)
                      for c, w in zip(controls, wanted, strict=True)]
            with torch.enable_grad():
                J = ecg._pairing(grad_W.detach().to(torch.float64).contiguous(), *leaves,
                                 torch.from_numpy(ecg.points))
                grads = torch.autograd.grad(J.sum(), [leaf for leaf, w in zip(leaves, wanted, strict=True) if w])
            # a Constant's gradient is this rank's share, as everywhere in deepnum-fem
            # (dnf.parallel.allreduce_gradients sums the shares)
            grads = iter(grads)
            for i, w in enumerate(wanted):
                if w:
                    out[i] = next(grads).to(controls[i])
        return (None, *out)
