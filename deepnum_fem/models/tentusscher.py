"""The ten Tusscher–Panfilov (2006) human ventricular cell model in torch.

K. H. W. J. ten Tusscher and A. V. Panfilov, "Alternans and spiral breakup in a human
ventricular tissue model", Am J Physiol Heart Circ Physiol 291:H1088–H1100 (2006). Twelve
ionic currents, twelve gating variables, a four-state calcium subsystem (cytoplasm,
sarcoplasmic reticulum, subspace, the ryanodine receptor's ``R'``) and the intracellular
sodium and potassium concentrations: 19 states.

Unlike the phenomenological models of :mod:`deepnum_fem.models.ionic`, the potential is in
mV (row 0 of the state), currents are in pA/pF (= mV/ms), concentrations in mM and time in
ms. The membrane equation is ``dV/dt = -I_ion + I_stim`` with ``I_stim`` the applied current
(positive depolarises: the paper's stimulus of -52 pA/pF is ``stimulus=52``). The applied
current is carried by potassium ions (it enters ``dK_i/dt``), so that a paced cell conserves
charge.

One :meth:`~TenTusscherPanfilov2006.step` is the classic Rush–Larsen scheme: the twelve gates
are advanced by the exact solution of their linear ODEs with ``V`` frozen, ``V``, ``R'`` and
the concentrations by forward Euler, all from the values at the start of the step. It is first
order in ``dt``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from deepnum_fem.models.ionic import IonicModel

__all__ = ["CELL_PARAMETERS", "CONSTANTS", "PARAMETERS", "REST", "STATE_NAMES", "TenTusscherPanfilov2006",
           "action_potential_features"]


#: Default parameter values: the epicardial cell's, as in the CellML version of the model and
#: the reference ``.ode`` (the tests' reference). Units: conductances nS/pF, ``g_CaL``
#: L/(F s), pump and exchanger maxima pA/pF, concentrations mM, rates 1/ms, volumes µm³,
#: ``Cm`` pF, ``R`` J/(mol K), ``T`` K, ``F`` C/mmol.
PARAMETERS: dict[str, float] = {
    # maximal conductances and current densities
    "g_Na": 14.838, "g_K1": 5.405, "g_to": 0.294, "g_Kr": 0.153, "g_Ks": 0.392,
    "g_CaL": 0.0398, "K_NaCa": 1000.0, "P_NaK": 2.724, "g_pCa": 0.1238, "g_pK": 0.0146,
    "g_bNa": 0.00029, "g_bCa": 0.000592,
    # extracellular concentrations
    "K_o": 5.4, "Na_o": 140.0, "Ca_o": 2.0,
    # reversal potential of I_Ks, the pump and the exchanger
    "P_kNa": 0.03, "K_mK": 1.0, "K_mNa": 40.0, "K_sat": 0.1, "alpha": 2.5, "gamma": 0.35,
    "Km_Ca": 1.38, "Km_Nai": 87.5, "K_pCa": 0.0005,
    # calcium handling
    "k1_prime": 0.15, "k2_prime": 0.045, "k3": 0.06, "k4": 0.005, "EC": 1.5, "max_sr": 2.5,
    "min_sr": 1.0, "V_rel": 0.102, "V_xfer": 0.0038, "K_up": 0.00025, "V_leak": 0.00036,
    "Vmax_up": 0.006375, "Buf_c": 0.2, "K_buf_c": 0.001, "Buf_sr": 10.0, "K_buf_sr": 0.3,
    "Buf_ss": 0.4, "K_buf_ss": 0.00025,
    # cell geometry and physical constants (R and F: see ``constants``)
    "V_c": 16404.0, "V_sr": 1094.0, "V_ss": 54.68, "Cm": 185.0,
    "R": 8.314, "T": 310.0, "F": 96.485,
}

#: ``R`` and ``F`` of each ``constants=`` choice: ``"reference"`` those of the CellML file and
#: of fenicsx-beat's benchmark model (8.314, 96.485), ``"paper"`` the paper's (8.314472,
#: 96.4853415).
CONSTANTS: dict[str, dict[str, float]] = {
    "reference": {"R": 8.314, "F": 96.485},
    "paper": {"R": 8.314472, "F": 96.4853415},
}

#: What differs between the cell types (the paper's Table 1): the M cell has a quarter of the
#: epicardial ``g_Ks``; its gates are the epicardial ones.
CELL_PARAMETERS: dict[str, dict[str, float]] = {
    "epi": {},
    "M": {"g_Ks": 0.098},
}

#: The state's rows: the potential, the twelve gates, ``R'`` and the concentrations.
STATE_NAMES = ("V", "m", "h", "j", "d", "f", "f2", "fCass", "r", "s", "Xr1", "Xr2", "Xs",
               "R_prime", "Ca_i", "Ca_SR", "Ca_ss", "Na_i", "K_i")

#: Initial values of each cell type (those of the CellML versions of the model).
REST: dict[str, dict[str, float]] = {
    "epi": {"V": -85.23, "m": 0.00172, "h": 0.7444, "j": 0.7045, "d": 3.373e-05, "f": 0.7888,
            "f2": 0.9755, "fCass": 0.9953, "r": 2.42e-08, "s": 0.999998, "Xr1": 0.00621,
            "Xr2": 0.4712, "Xs": 0.0095, "R_prime": 0.9073, "Ca_i": 0.000126, "Ca_SR": 3.64,
            "Ca_ss": 0.00036, "Na_i": 8.604, "K_i": 136.89},
    "M": {"V": -85.423, "m": 0.00165, "h": 0.749, "j": 0.6788, "d": 3.288e-05, "f": 0.7026,
          "f2": 0.9526, "fCass": 0.9942, "r": 2.347e-08, "s": 0.999998, "Xr1": 0.0165,
          "Xr2": 0.473, "Xs": 0.0174, "R_prime": 0.8978, "Ca_i": 0.000153, "Ca_SR": 4.272,
          "Ca_ss": 0.00042, "Na_i": 10.132, "K_i": 138.52},
}

#: The logistic terms ``1 / (1 + exp((V - V_h) / k))`` of the gates' kinetics as ``(V_h,
#: 1 / k)`` (mV, 1/mV), evaluated together with one ``sigmoid``.
_LOGISTIC = {
    "xr1_inf": (-26.0, -1 / 7), "a_xr1": (-45.0, -1 / 10), "b_xr1": (-30.0, 1 / 11.5),
    "xr2_inf": (-88.0, 1 / 24), "a_xr2": (-60.0, -1 / 20), "b_xr2": (60.0, 1 / 20),
    "xs_inf": (-5.0, -1 / 14), "a_xs": (5.0, -1 / 6), "b_xs": (35.0, 1 / 15),
    "m_inf": (-56.86, -1 / 9.03), "a_m": (-60.0, -1 / 5), "b_m1": (-35.0, 1 / 5),
    "b_m2": (50.0, 1 / 200),
    "h_inf": (-71.55, 1 / 7.43), "b_h_hi": (-10.66, -1 / 11.1),
    "a_j_lo": (-79.23, 0.311), "b_j_lo": (-40.14, -0.1378), "b_j_hi": (-32.0, -0.1),
    "d_inf": (-8.0, -1 / 7.5), "a_d": (-35.0, -1 / 13), "b_d": (-5.0, 1 / 5),
    "c_d": (50.0, -1 / 20),
    "f_inf": (-20.0, 1 / 7), "tf_hi": (13.0, -1 / 10), "tf_lo": (-30.0, 1 / 10),
    "f2_inf": (-35.0, 1 / 7), "tf2_hi": (25.0, -1 / 10),
    "s_inf": (-20.0, 1 / 5), "ts": (20.0, 1 / 5), "r_inf": (20.0, -1 / 6),
}
#: The Gaussian terms ``exp(-(V - V_c)² / w)`` of the time constants as ``(V_c, w)`` (mV, mV²).
_GAUSSIAN = {"tf": (-27.0, 225.0), "tf2": (-27.0, 240.0), "ts": (-45.0, 320.0), "tr": (-40.0, 1800.0)}
#: The exponentials ``exp(a V)`` of the h and j gates below -40 mV, as ``a`` (1/mV).
_EXP_LOW = {"a_h": -1 / 6.8, "b_h1": 0.079, "b_h2": 0.3485, "a_j1": 0.2444, "a_j2": -0.04391,
            "b_j": -0.01052}
#: The exponentials of ``I_K1``'s rectification, ``exp(a (V - E_K) + b)``, as ``(a, b)``.
_EXP_K1 = {"a": (0.06, -12.0), "b1": (0.0002, 0.02), "b2": (0.1, -1.0), "b3": (-0.5, 0.0)}

#: Below ``|z|`` of this, ``z / (exp(z) - 1)`` is its Taylor series (to ``z⁸``, exact to
#: ~1e-18 at the edge); above it, the closed form (whose autograd derivative loses
#: ~``eps / z²`` to cancellation).
BERNOULLI_BAND = 0.1


def _bernoulli(z: torch.Tensor) -> torch.Tensor:
    """``z / (exp(z) - 1)``, finite with finite derivatives at ``z = 0`` (a removable singularity)."""
    small = z.abs() < BERNOULLI_BAND
    z_far = torch.where(small, BERNOULLI_BAND, z)         # keeps 0/0 out of the unused branch's gradient
    exact = z_far / torch.expm1(z_far)
    y = z * z                                             # 1 - z/2 + z²/12 - z⁴/720 + z⁶/30240 - z⁸/1209600
    series = 1.0 - 0.5 * z + y * (1 / 12 + y * (-1 / 720 + y * (1 / 30240 - y / 1209600)))
    return torch.where(small, series, exact)


class TenTusscherPanfilov2006(IonicModel):
    """The ten Tusscher–Panfilov (2006) human ventricular cell (see the module docstring).

    State ``(19, n)``: rows :attr:`state_names`, ``V`` (mV) first; :attr:`rest` holds the
    initial values of ``cell``. Every parameter of :data:`PARAMETERS` is an attribute of the
    same name: a float, or a tensor broadcastable to ``(n,)`` (one value per node, a buffer),
    or, when named in ``learnable``, an ``nn.Parameter`` (float64, from the given or default
    value) through which steps are differentiable. Steps run on the state's device and dtype.

    Args:
        cell: ``"epi"`` (epicardial, the default and the benchmark's) or ``"M"``
            (midmyocardial: ``g_Ks = 0.098`` and its own initial values). The endocardial
            cell, whose ``I_to`` inactivation gate has different kinetics, is not provided.
        constants: ``"reference"`` (default: ``R = 8.314``, ``F = 96.485`` as in the CellML
            file and the benchmark's ``.ode``, which the tests match to round-off) or
            ``"paper"`` (8.314472, 96.4853415); see :data:`CONSTANTS`.
        learnable: Names of parameters to make ``nn.Parameter``\\ s, e.g. ``("g_Ks", "g_CaL")``.
        **values: Parameter values replacing the defaults (floats or tensors), e.g.
            ``g_Kr=0.1``.
    """

    n_slow = 18
    stimulus_in_slow = True
    #: names of the state's rows: :data:`STATE_NAMES`
    state_names: tuple[str, ...] = STATE_NAMES
    #: names of the gating variables, advanced by Rush–Larsen (rows 1 to 12)
    gate_names: tuple[str, ...] = STATE_NAMES[1:13]

    def __init__(self, cell: str = "epi", *, constants: str = "reference",
                 learnable: Iterable[str] = (), **values: float | torch.Tensor):
        super().__init__()
        if cell not in CELL_PARAMETERS:
            raise ValueError(f"TenTusscherPanfilov2006: cell must be one of {sorted(CELL_PARAMETERS)}, "
                             f"got {cell!r} (the endocardial cell is not provided)")
        if constants not in CONSTANTS:
            raise ValueError(f"TenTusscherPanfilov2006: constants must be one of {sorted(CONSTANTS)}, "
                             f"got {constants!r}")
        learnable = tuple(learnable)
        unknown = sorted(set(values).union(learnable) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"TenTusscherPanfilov2006: unknown parameters {unknown}; "
                             f"known: {sorted(PARAMETERS)}")
        self.cell, self.constants = cell, constants
        chosen = {**PARAMETERS, **CONSTANTS[constants], **CELL_PARAMETERS[cell], **values}
        for name, value in chosen.items():
            if name in learnable:
                tensor = torch.as_tensor(value, dtype=torch.float64).detach().clone()
                self.register_parameter(name, nn.Parameter(tensor))
            elif isinstance(value, torch.Tensor):
                self.register_buffer(name, value)      # as given: gradients flow through it, if it has any
            else:
                setattr(self, name, float(value))
        self.rest = tuple(REST[cell][name] for name in STATE_NAMES)
        # the coefficient tables, as columns (k, 1) that broadcast against V (n,)
        centre, width = zip(*_GAUSSIAN.values(), strict=True)
        tables = {"_logistic": list(zip(*_LOGISTIC.values(), strict=True)),
                  "_gaussian": [centre, [-1 / w for w in width]],
                  "_exp_low": [list(_EXP_LOW.values())],
                  "_exp_k1": list(zip(*_EXP_K1.values(), strict=True))}
        for name, rows in tables.items():
            self.register_buffer(name, torch.tensor(rows, dtype=torch.float64)[:, :, None], persistent=False)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, constants={self.constants!r}"

    @property
    def parameter_values(self) -> dict[str, float | torch.Tensor]:
        """Every parameter's current value (float, buffer or ``nn.Parameter``), by name."""
        return {name: getattr(self, name) for name in PARAMETERS}

    # -- the model ----------------------------------------------------------------------
    def gate_kinetics(self, V: torch.Tensor, Ca_ss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steady states and time constants (ms) of the twelve gates, each ``(12, n)`` in the
        order of :attr:`gate_names`."""
        L = self._logistic.to(V)
        lg = dict(zip(_LOGISTIC, torch.sigmoid((L[0] - V) * L[1]).unbind(0), strict=True))
        G = self._gaussian.to(V)
        gs = dict(zip(_GAUSSIAN, torch.exp(torch.square(V - G[0]) * G[1]).unbind(0), strict=True))
        low = V < -40.0
        V_low = torch.clamp(V, max=-40.0)   # the branch below -40 mV, kept finite above it
        ex = dict(zip(_EXP_LOW, torch.exp(self._exp_low.to(V)[0] * V_low).unbind(0), strict=True))

        m_inf = lg["m_inf"] ** 2
        tau_m = lg["a_m"] * (0.1 * lg["b_m1"] + 0.1 * lg["b_m2"])
        h_inf = lg["h_inf"] ** 2                                    # = j_inf
        alpha_h = torch.where(low, 0.057 * math.exp(-80 / 6.8) * ex["a_h"], 0.0)
        beta_h = torch.where(low, 2.7 * ex["b_h1"] + 3.1e5 * ex["b_h2"], (0.77 / 0.13) * lg["b_h_hi"])
        alpha_j = torch.where(low, (-25428.0 * ex["a_j1"] - 6.948e-6 * ex["a_j2"]) * (V_low + 37.78)
                              * lg["a_j_lo"], 0.0)
        beta_j = torch.where(low, 0.02424 * ex["b_j"] * lg["b_j_lo"],
                             0.6 * torch.exp(0.057 * V) * lg["b_j_hi"])
        tau_d = (1.4 * lg["a_d"] + 0.25) * (1.4 * lg["b_d"]) + lg["c_d"]
        tau_f = 1102.5 * gs["tf"] + 200.0 * lg["tf_hi"] + 180.0 * lg["tf_lo"] + 20.0
        f2_inf = 0.67 * lg["f2_inf"] + 0.33
        tau_f2 = 562.0 * gs["tf2"] + 31.0 * lg["tf2_hi"] + 80.0 * lg["tf_lo"]
        ca = torch.reciprocal(1.0 + 400.0 * Ca_ss * Ca_ss)         # 1 / (1 + (Ca_ss / 0.05)²)
        tau_s = 85.0 * gs["ts"] + 5.0 * lg["ts"] + 3.0
        tau_r = 9.5 * gs["tr"] + 0.8
        tau_xr1 = 2700.0 * lg["a_xr1"] * lg["b_xr1"]
        tau_xr2 = 3.36 * lg["a_xr2"] * lg["b_xr2"]
        tau_xs = 1400.0 * torch.sqrt(lg["a_xs"]) * lg["b_xs"] + 80.0
        inf = torch.stack([m_inf, h_inf, h_inf, lg["d_inf"], lg["f_inf"], f2_inf, 0.6 * ca + 0.4,
                           lg["r_inf"], lg["s_inf"], lg["xr1_inf"], lg["xr2_inf"], lg["xs_inf"]])
        tau = torch.stack([tau_m, torch.reciprocal(alpha_h + beta_h), torch.reciprocal(alpha_j + beta_j), tau_d, tau_f,
                           tau_f2, 80.0 * ca + 2.0, tau_r, tau_s, tau_xr1, tau_xr2, tau_xs])
        return inf, tau

    def currents(self, v: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """The twelve ionic currents (pA/pF) by name: ``i_Na, i_K1, i_to, i_Kr, i_Ks, i_CaL,
        i_NaCa, i_NaK, i_pCa, i_pK, i_bNa, i_bCa``."""
        V = v
        m, h, j, d, f, f2, fCass, r, s, Xr1, Xr2, Xs, _, Ca_i, _, Ca_ss, Na_i, K_i = w.unbind(0)
        R, T, F = self.R, self.T, self.F
        K_o, Na_o, Ca_o = self.K_o, self.Na_o, self.Ca_o
        RT_F = R * T / F
        E_Na = -RT_F * torch.log(Na_i / Na_o)
        E_K = -RT_F * torch.log(K_i / K_o)
        E_Ks = -RT_F * torch.log((K_i + self.P_kNa * Na_i) / (K_o + self.P_kNa * Na_o))
        E_Ca = -0.5 * RT_F * torch.log(Ca_i / Ca_o)
        x = V - E_K
        K1 = self._exp_k1.to(V)
        a_K1, b_K1a, b_K1b, b_K1c = torch.exp(x * K1[0] + K1[1]).unbind(0)
        alpha_K1 = 0.1 / (1.0 + a_K1)
        beta_K1 = (3.0 * b_K1a + b_K1b) / (1.0 + b_K1c)
        k_o = (K_o / 5.4) ** 0.5
        u = V / RT_F                                                 # V F / (R T)
        z = (V - 15.0) * (2.0 / RT_F)
        e_NaCa = torch.exp((self.gamma - 1.0) * u)
        return {
            "i_Na": self.g_Na * m ** 3 * h * j * (V - E_Na),
            "i_K1": (self.g_K1 * k_o) * alpha_K1 / (alpha_K1 + beta_K1) * x,
            "i_to": self.g_to * r * s * x,
            "i_Kr": (self.g_Kr * k_o) * Xr1 * Xr2 * x,
            "i_Ks": self.g_Ks * Xs ** 2 * (V - E_Ks),
            "i_CaL": (2.0 * F * self.g_CaL) * d * f * f2 * fCass * _bernoulli(z)
                     * (0.25 * Ca_ss * torch.exp(z) - Ca_o),
            "i_NaCa": self.K_NaCa * (torch.exp(self.gamma * u) * Na_i ** 3 * Ca_o
                                     - e_NaCa * (Na_o ** 3 * self.alpha) * Ca_i)
                      / ((self.Km_Nai ** 3 + Na_o ** 3) * (self.Km_Ca + Ca_o) * (1.0 + self.K_sat * e_NaCa)),
            "i_NaK": (self.P_NaK * K_o / (K_o + self.K_mK)) * Na_i / (Na_i + self.K_mNa)
                     / (1.0 + 0.1245 * torch.exp(-0.1 * u) + 0.0353 * torch.exp(-u)),
            "i_pCa": self.g_pCa * Ca_i / (Ca_i + self.K_pCa),
            "i_pK": self.g_pK * x * torch.sigmoid((V - 25.0) * (1 / 5.98)),
            "i_bNa": self.g_bNa * (V - E_Na),
            "i_bCa": self.g_bCa * (V - E_Ca),
        }

    def current(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The total ionic current ``I_ion`` (pA/pF = mV/ms); ``w`` has shape (18, n)."""
        return _total(self.currents(v, w))

    def _concentration_rates(self, w, i, stimulus) -> torch.Tensor:
        """d/dt of ``R', Ca_i, Ca_SR, Ca_ss, Na_i, K_i`` (1/ms, mM/ms), shape (6, n)."""
        R_prime, Ca_i, Ca_SR, Ca_ss = w[12], w[13], w[14], w[15]
        F, V_c, V_sr, V_ss, Cm = self.F, self.V_c, self.V_sr, self.V_ss, self.Cm
        Ca_i2 = Ca_i * Ca_i
        i_up = self.Vmax_up * Ca_i2 / (Ca_i2 + self.K_up ** 2)
        i_leak = self.V_leak * (Ca_SR - Ca_i)
        i_xfer = self.V_xfer * (Ca_ss - Ca_i)
        Ca_SR2 = Ca_SR * Ca_SR
        kcasr = self.max_sr - (self.max_sr - self.min_sr) * Ca_SR2 / (Ca_SR2 + self.EC ** 2)
        k1_ss2 = self.k1_prime * Ca_ss * Ca_ss / kcasr
        i_rel = self.V_rel * k1_ss2 * R_prime / (self.k3 + k1_ss2) * (Ca_SR - Ca_ss)
        dR_prime = -self.k2_prime * kcasr * Ca_ss * R_prime + self.k4 * (1.0 - R_prime)
        free_i = _free_fraction(Ca_i, self.Buf_c, self.K_buf_c)
        free_sr = _free_fraction(Ca_SR, self.Buf_sr, self.K_buf_sr)
        free_ss = _free_fraction(Ca_ss, self.Buf_ss, self.K_buf_ss)
        dCa_i = free_i * ((i["i_NaCa"] * 2.0 - i["i_bCa"] - i["i_pCa"]) * (Cm / (2.0 * V_c * F))
                          + (i_leak - i_up) * (V_sr / V_c) + i_xfer)
        dCa_SR = free_sr * (i_up - i_rel - i_leak)
        dCa_ss = free_ss * (i["i_CaL"] * (-Cm / (2.0 * V_ss * F)) + i_rel * (V_sr / V_ss) - i_xfer * (V_c / V_ss))
        per_charge = -Cm / (V_c * F)
        dNa_i = per_charge * (i["i_Na"] + i["i_bNa"] + 3.0 * i["i_NaK"] + 3.0 * i["i_NaCa"])
        dK_i = per_charge * (i["i_K1"] + i["i_to"] + i["i_Kr"] + i["i_Ks"] + i["i_pK"] - 2.0 * i["i_NaK"]
                             - stimulus)
        return torch.stack([dR_prime, dCa_i, dCa_SR, dCa_ss, dNa_i, dK_i])

    def _advance(self, v, w, dt, stimulus, i):
        inf, tau = self.gate_kinetics(v, w[15])
        # x(t + dt) = x + (x_inf - x)(1 - exp(-dt / tau)): no cancellation when x << x_inf
        gates = w[:12] - (inf - w[:12]) * torch.expm1(-dt / tau)
        rest = w[12:] + dt * self._concentration_rates(w, i, stimulus)
        return torch.cat([gates, rest])

    def slow_step(self, v: torch.Tensor, w: torch.Tensor, dt: float,
                  stimulus: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Advance the 18 slow variables by ``dt`` (ms) with ``V`` frozen: Rush–Larsen for the
        gates, forward Euler for ``R'`` and the concentrations. ``stimulus`` (pA/pF, per node
        or a scalar) is the applied current, which enters ``dK_i/dt``."""
        return self._advance(v, w, dt, stimulus, self.currents(v, w))

    def step(self, state: torch.Tensor, dt: float | torch.Tensor,
             stimulus: torch.Tensor | float = 0.0) -> torch.Tensor:
        """One Rush–Larsen step from ``state`` ``(19, n)``: the same update as
        :meth:`IonicModel.step <deepnum_fem.models.IonicModel.step>`, with the currents
        evaluated once.

        Args:
            state: The state at the start of the step.
            dt: The step (ms); a float, or a tensor of shape ``(n,)`` (one step per node).
            stimulus: The applied current (pA/pF, positive depolarises), per node or a scalar.
        """
        self.check_state(state)
        v, w = state[0], state[1:]
        i = self.currents(v, w)
        v_new = v + dt * (stimulus - _total(i))
        return torch.cat([v_new[None], self._advance(v, w, dt, stimulus, i)])

    def named_states(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows of a state ``(19, ...)`` by name (views)."""
        return dict(zip(self.state_names, state.unbind(0), strict=True))


def _total(i: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return (i["i_K1"] + i["i_to"] + i["i_Kr"] + i["i_Ks"] + i["i_CaL"] + i["i_NaK"] + i["i_Na"] + i["i_bNa"]
            + i["i_NaCa"] + i["i_bCa"] + i["i_pK"] + i["i_pCa"])


def _free_fraction(ca: torch.Tensor, buffer: float, k: float) -> torch.Tensor:
    """The free fraction of calcium, ``1 / (1 + buffer k / (ca + k)²)``, of a rapid buffer."""
    c2 = (ca + k) * (ca + k)
    return c2 / (c2 + buffer * k)


def action_potential_features(V: np.ndarray, dt: float, onset: int = 0) -> dict[str, float]:
    """Features of one action potential in ``V`` (mV), sampled every ``dt`` (ms) from index
    ``onset`` (the stimulus onset): ``rest`` (V at the onset), ``peak``, ``dvdt_max`` (mV/ms)
    and ``apd90`` (ms, from the steepest upstroke to 90 % repolarisation, interpolated)."""
    Vb = np.asarray(V, dtype=np.float64)[onset:]
    dvdt = np.diff(Vb) / dt
    k_up, k_pk = int(np.argmax(dvdt)), int(np.argmax(Vb))
    rest, peak = float(Vb[0]), float(Vb[k_pk])
    level = peak - 0.9 * (peak - rest)
    kk = k_pk + int(np.nonzero(Vb[k_pk:] < level)[0][0])
    t_cross = (kk - 1) * dt + dt * (Vb[kk - 1] - level) / (Vb[kk - 1] - Vb[kk])
    return {"rest": rest, "peak": peak, "dvdt_max": float(dvdt.max()), "apd90": t_cross - k_up * dt}
