"""Phenomenological ionic models in torch, vectorised over the nodes of a mesh.

Both models use the normalised transmembrane potential ``v`` (0 at rest, 1 when fully
depolarised; ``V_m = V_rest + (V_peak - V_rest) v``) and time in milliseconds. They write
the membrane equation as

    dv/dt = -I_ion(v, w) + I_stim,        dw/dt = g(v, w),

where ``w`` holds the model's slow variables (one column each). The state of ``n`` nodes is
a tensor of shape ``(1 + n_slow, n)``: row 0 is ``v``, the rest are the slow variables.
Time steps are differentiable by autograd in the state and in any parameter registered as
an ``nn.Parameter``; they run on whatever device the state lives on.

:class:`~deepnum_fem.models.TenTusscherPanfilov2006` (:mod:`deepnum_fem.models.tentusscher`)
is an :class:`IonicModel` too, a physiological one: its ``v`` is the potential in mV, its
currents are in pA/pF (mV/ms).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AlievPanfilov", "HybridIonic", "IonicModel", "MitchellSchaeffer"]


class IonicModel(nn.Module):
    """Base class: subclasses define :attr:`n_slow`, :meth:`current`, :meth:`slow_step`."""

    #: number of slow variables ``w`` (the state's rows after ``v``)
    n_slow: int = 1
    #: resting values of ``(v, *w)``
    rest: tuple[float, ...] = (0.0, 0.0)
    #: whether :meth:`slow_step` takes the applied current as ``stimulus=`` (a model whose slow
    #: variables include the ion that carries it, such as
    #: :class:`~deepnum_fem.models.TenTusscherPanfilov2006`); :meth:`step` passes it then
    stimulus_in_slow: bool = False

    def current(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The ionic current ``I_ion(v, w)`` (units of dv/dt: 1/ms); ``w`` has shape (n_slow, n)."""
        raise NotImplementedError

    def slow_step(self, v: torch.Tensor, w: torch.Tensor, dt: float) -> torch.Tensor:
        """Advance the slow variables by ``dt`` with ``v`` frozen (with :attr:`stimulus_in_slow`,
        also given ``stimulus=``, the applied current)."""
        raise NotImplementedError

    def initial_state(self, n: int, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """The resting state of ``n`` nodes, shape ``(1 + n_slow, n)``."""
        rest = torch.tensor(self.rest, dtype=dtype, device=device)
        return rest[:, None].expand(1 + self.n_slow, n).clone()

    def check_state(self, state: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``state`` has the shape ``(1 + n_slow, n)``."""
        if state.dim() != 2 or state.shape[0] != 1 + self.n_slow:
            raise ValueError(f"{type(self).__name__}: state of shape (1 + {self.n_slow}, n) expected, "
                             f"got {tuple(state.shape)}")

    def step(self, state: torch.Tensor, dt: float, stimulus: torch.Tensor | float = 0.0) -> torch.Tensor:
        """One reaction step of length ``dt`` (ms): forward Euler in ``v``, then :meth:`slow_step`.

        ``stimulus`` is the applied current (1/ms) per node, or a scalar.
        """
        self.check_state(state)
        v, w = state[0], state[1:]
        v_new = v + dt * (stimulus - self.current(v, w))
        w_new = self.slow_step(v, w, dt, stimulus=stimulus) if self.stimulus_in_slow else self.slow_step(v, w, dt)
        return torch.cat([v_new[None], w_new])


class AlievPanfilov(IonicModel):
    """Aliev & Panfilov (1996), "A simple two-variable model of cardiac excitation".

    In its dimensionless time ``τ``::

        dv/dτ = -k v (v - a)(v - 1) - v w,
        dw/dτ = ε(v, w) (-w - k v (v - a - 1)),   ε = ε₀ + μ₁ w / (μ₂ + v).

    Physical time is ``t = time_scale · τ`` (12.9 ms in the original paper), so every rate
    here is divided by ``time_scale``; ``V_m = 100 v - 80`` mV. Defaults are the paper's:
    ``k = 8, a = 0.15, ε₀ = 0.002, μ₁ = 0.2, μ₂ = 0.3``. With ``eps0 = mu1 = 0`` the slow
    variable is frozen at 0 and only the bistable "fast subsystem" remains, whose planar
    front speed is ``c = √(k D / (2 time_scale)) (1 - 2a)``.
    """

    n_slow = 1
    rest = (0.0, 0.0)

    def __init__(self, k: float = 8.0, a: float = 0.15, eps0: float = 0.002, mu1: float = 0.2,
                 mu2: float = 0.3, time_scale: float = 12.9):
        super().__init__()
        self.k, self.a, self.eps0, self.mu1, self.mu2 = k, a, eps0, mu1, mu2
        self.time_scale = time_scale

    def current(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (self.k * v * (v - self.a) * (v - 1.0) + v * w[0]) / self.time_scale

    def slow_step(self, v: torch.Tensor, w: torch.Tensor, dt: float) -> torch.Tensor:
        w0 = w[0]
        eps = self.eps0 + self.mu1 * w0 / (self.mu2 + v)
        return (w0 + dt / self.time_scale * eps * (-w0 - self.k * v * (v - self.a - 1.0)))[None]

    def front_speed(self, diffusivity: float) -> float:
        """Planar front speed (mm/ms) of the fast subsystem for ``diffusivity`` in mm²/ms."""
        return math.sqrt(self.k * diffusivity / (2.0 * self.time_scale)) * (1.0 - 2.0 * self.a)


class MitchellSchaeffer(IonicModel):
    """Mitchell & Schaeffer (2003), "A two-current model for the dynamics of cardiac membrane"::

        dv/dt = -(h v² (1 - v) / τ_in - v / τ_out),
        dh/dt = (1 - h) / τ_open  if v < v_gate,   -h / τ_close  otherwise.

    Times in ms; defaults ``τ_in = 0.3, τ_out = 6, τ_open = 120, τ_close = 150,
    v_gate = 0.13`` are the paper's. The gate's switch is smoothed into a logistic of width
    ``gate_width`` (0 gives the original discontinuous switch) so that ``v`` reaches the
    gate's rates differentiably; ``h`` is advanced by the exact exponential step of its
    linear ODE with ``v`` frozen (Rush–Larsen), which is stable for any ``dt``. With the gate
    open (``h = 1``) the fast subsystem's front speed is ``1.0866 √D`` for the default
    ``τ_in, τ_out`` (see :meth:`front_speed`).
    """

    n_slow = 1
    rest = (0.0, 1.0)

    def __init__(self, tau_in: float = 0.3, tau_out: float = 6.0, tau_open: float = 120.0,
                 tau_close: float = 150.0, v_gate: float = 0.13, gate_width: float = 0.01):
        super().__init__()
        self.tau_in, self.tau_out = tau_in, tau_out
        self.tau_open, self.tau_close, self.v_gate = tau_open, tau_close, v_gate
        self.gate_width = gate_width

    def current(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return -(w[0] * v * v * (1.0 - v) / self.tau_in) + v / self.tau_out

    def slow_step(self, v: torch.Tensor, w: torch.Tensor, dt: float) -> torch.Tensor:
        h = w[0]
        if self.gate_width > 0:
            closing = torch.sigmoid((v - self.v_gate) / self.gate_width)
        else:
            closing = (v >= self.v_gate).to(v.dtype)
        opening_rate = (1.0 - closing) / self.tau_open
        closing_rate = closing / self.tau_close
        total = opening_rate + closing_rate
        h_inf = opening_rate / total
        return (h_inf + (h - h_inf) * torch.exp(-dt * total))[None]

    def front_speed(self, diffusivity: float) -> float:
        """Planar front speed (mm/ms) with the gate open (``h = 1``), ``diffusivity`` in mm²/ms.

        The fast subsystem is the bistable ``v(v - a)(b - v) / τ_in`` with ``a, b`` the roots
        of ``v² - v + τ_in / τ_out``; its front speed is ``√(D / (2 τ_in)) (b - 2a)``.
        """
        disc = math.sqrt(1.0 - 4.0 * self.tau_in / self.tau_out)
        a, b = (1.0 - disc) / 2.0, (1.0 + disc) / 2.0
        return math.sqrt(diffusivity / (2.0 * self.tau_in)) * (b - 2.0 * a)


class HybridIonic(IonicModel):
    """A known ionic model plus a learned correction: ``I_ion = I_known(v, w) + N_θ(v, w)``.

    ``network`` maps points of shape ``(n, 1 + n_slow)`` (columns ``v, w…``, in the known
    model's units) to ``(n, 1)`` or ``(n,)``; it may compute in float32 (inputs are cast to its
    dtype and the output back). The slow variables follow the known model (and receive the
    applied current when it takes it: :attr:`IonicModel.stimulus_in_slow`).
    """

    def __init__(self, known: IonicModel, network: nn.Module):
        super().__init__()
        self.known = known
        self.network = network
        self.n_slow = known.n_slow
        self.rest = known.rest
        self.stimulus_in_slow = known.stimulus_in_slow
        if hasattr(known, "state_names"):
            self.state_names = known.state_names

    def correction(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        param = next(self.network.parameters(), None)
        dtype = param.dtype if param is not None else v.dtype
        points = torch.cat([v[None], w]).T.to(dtype)
        out = self.network(points)
        if out.shape not in ((v.shape[0],), (v.shape[0], 1)):
            raise ValueError(f"HybridIonic: the network must return shape ({v.shape[0]},) or "
                             f"({v.shape[0]}, 1) for {v.shape[0]} points, got {tuple(out.shape)}")
        return out.reshape(-1).to(v.dtype)

    def current(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.known.current(v, w) + self.correction(v, w)

    def slow_step(self, v: torch.Tensor, w: torch.Tensor, dt: float, **stimulus) -> torch.Tensor:
        return self.known.slow_step(v, w, dt, **stimulus)
