"""A two-level preconditioner whose smoother is a learned FSAI, trained for that role.

The cycle is PETSc's own (``PCMG``, two levels, multiplicative V-cycle): one Richardson
sweep of the smoother ``S = GᵀG`` before and after an exact coarse correction on the span of a
piecewise-constant prolongator ``P`` from plain aggregation
(:mod:`~deepnum_fem.precond.aggregation`); the coarse matrix ``PᵀAP`` is factorised by MUMPS
(Cholesky; LU for a non-symmetric operator). ``G`` is lower triangular on the pattern of ``A`` and comes from an
:class:`~deepnum_fem.precond.fsai.FSAINet` evaluated on the matrix (setup: one network call over
the nonzeros, no solve). Pre- and post-smoothing are the same symmetric operator, so the
preconditioner is symmetric, and positive definite while ``ρ(SA) < 2``; it is used with CG.

Training (:func:`two_level_loss`) needs no solutions: it minimises the energy left in random
errors after two cycles, ``‖E²e‖²_A / ‖e‖²_A`` with ``E = (I − SA)(I − P(PᵀAP)⁻¹PᵀA)(I − SA)``,
on small matrices of the training family. The smoother thus learns to remove what the coarse
space cannot, rather than to approximate ``A⁻¹`` on its own.

Parallel design: aggregates do not cross rank boundaries (no communication to build them);
``P``, ``PᵀAP`` and ``G`` are distributed PETSc matrices, so every product and the coarse
solve run on all ranks; the network sees each rank's nonzeros with the neighbour features
fetched by ``VecScatter`` (as in :class:`~deepnum_fem.precond.fsai.LearnedFSAI`).
"""

from __future__ import annotations

import os
import time

from petsc4py import PETSc

import torch

from deepnum_fem.errors import DeepnumFemError
from deepnum_fem.precond.aggregation import tentative_prolongator
from deepnum_fem.precond.fsai import DEFAULT_SMOOTHER, FSAINet, LearnedFSAI, TrainingMatrix, load_model

__all__ = ["DEFAULT_SMOOTHER", "TwoLevel", "two_level_loss"]

SMOOTHERS = ("learned", "jacobi", "sor")
COARSE_SOLVERS = ("cholesky", "lu")


def two_level_loss(net: FSAINet, mat: TrainingMatrix, n_vectors: int = 8,
                   generator: torch.Generator | None = None, cycles: int = 2) -> torch.Tensor:
    """``log mean ‖E^cycles e‖²_Â / ‖e‖²_Â`` over random ``e`` (``mat`` made with ``coarse=True``)."""
    g = net(mat.features)

    def smooth(e):
        return e - mat.apply_factor(g, mat.apply_factor(g, mat.apply(e)), transpose=True)

    def coarse(e):
        return e - mat.P @ torch.cholesky_solve(mat.P.T @ mat.apply(e), mat.coarse_cholesky)

    e0 = torch.randn(mat.n, n_vectors, dtype=torch.float64, generator=generator)
    e = e0
    for _ in range(cycles):
        e = smooth(coarse(smooth(e)))
    return torch.log(((e * mat.apply(e)).sum(0) / (e0 * mat.apply(e0)).sum(0)).mean())


class TwoLevel:
    """PETSc python-PC context: the two-level cycle above.

    Args:
        net: The smoother's network (pattern ``"A"``); default: the model in
            ``$DNF_TWOLEVEL_MODEL``, or the bundled one, read at the first setup on every rank
            (a missing or invalid file is a :class:`~deepnum_fem.errors.DeepnumFemError` there,
            on every rank).
        smoother: ``"learned"``, or PETSc's ``"jacobi"`` / ``"sor"`` in the same cycle (for
            comparison: Jacobi damped by 2/3, SOR symmetric).
        device: Where the network runs at setup.
        theta: Strength threshold of the aggregation.
        coarse: The coarse factorisation (MUMPS): ``"cholesky"`` for SPD operators, ``"lu"``
            otherwise (the cycle is then a non-symmetric preconditioner: use GMRES).

    By options: ``-pc_type python -pc_python_type deepnum_fem.precond.TwoLevel`` (with
    ``-ksp_type cg``), and the arguments as in :meth:`setFromOptions`. ``setup_seconds``,
    ``applications``, ``apply_seconds`` and ``coarse_size`` are kept for benchmarks.
    """

    linear = True

    @property
    def symmetric(self) -> bool:
        """With a Cholesky coarse solve the cycle is SPD (for SPD operators): CG."""
        return self.coarse == "cholesky"

    def __init__(self, net: FSAINet | None = None, *, smoother: str = "learned", device: str = "cpu",
                 theta: float = 0.08, coarse: str = "cholesky"):
        self.net, self.device = net, device
        self.theta = theta
        self._configure(smoother, coarse)
        self.mg: PETSc.PC | None = None
        self.error = None
        self.setup_seconds = 0.0
        self.applications = 0
        self.apply_seconds = 0.0
        self.coarse_size = 0

    def _configure(self, smoother: str, coarse: str) -> None:
        if smoother not in SMOOTHERS:
            raise DeepnumFemError(f"TwoLevel smoother must be one of {SMOOTHERS}, got {smoother!r}")
        if coarse not in COARSE_SOLVERS:
            raise DeepnumFemError(f"TwoLevel coarse solver must be one of {COARSE_SOLVERS}, got {coarse!r}")
        self.smoother, self.coarse = smoother, coarse
        self.fsai = None
        if smoother == "learned" and self.net is not None:
            self.fsai = _smoother(self.net, self.device)

    def setFromOptions(self, pc: PETSc.PC) -> None:  # noqa: N802 (PETSc's name)
        """``-{prefix}pc_twolevel_smoother learned|jacobi|sor``, ``-{prefix}pc_twolevel_coarse
        cholesky|lu`` (``lu`` for a non-symmetric operator, with GMRES) and
        ``-{prefix}pc_twolevel_theta``."""
        options = PETSc.Options(pc.getOptionsPrefix())
        try:
            self.theta = options.getReal("pc_twolevel_theta", self.theta)
            self._configure(options.getString("pc_twolevel_smoother", self.smoother),
                            options.getString("pc_twolevel_coarse", self.coarse))
        except DeepnumFemError as e:
            self.error = e     # kept for precond.solve(): PETSc wraps exceptions raised in callbacks
            raise

    def setUp(self, pc: PETSc.PC) -> None:  # noqa: N802 (PETSc's name)
        t0 = time.perf_counter()
        A, Pmat = pc.getOperators()
        self._destroy()
        if self.smoother == "learned" and self.fsai is None:
            try:
                net = load_model(kind="twolevel", comm=Pmat.getComm().tompi4py())
                self.fsai = _smoother(net, self.device, origin=os.environ.get("DNF_TWOLEVEL_MODEL"))
            except DeepnumFemError as e:
                self.error = e     # kept for precond.solve(): PETSc wraps exceptions raised in callbacks
                raise
            self.net = net
        P = tentative_prolongator(Pmat, theta=self.theta)
        coarse_matrix = Pmat.ptap(P)
        self.coarse_size = P.getSize()[1]
        mg = PETSc.PC().create(pc.getComm())
        mg.setType("mg")
        mg.setMGLevels(2)
        mg.setMGType(PETSc.PC.MGType.MULTIPLICATIVE)
        mg.setMGInterpolation(1, P)
        # the cycle is built on and applied with Pmat (PETSc's -pc_use_amat switches to Amat):
        # inside a Schur split, Amat is the matrix-free Schur complement, whose every
        # application is an inner solve, and which the smoother was not made for
        mg.setOperators(A if pc.getUseAmat() else Pmat, Pmat)
        coarse = mg.getMGCoarseSolve()
        coarse.setOperators(coarse_matrix)
        coarse.setType("preonly")
        coarse.getPC().setType(self.coarse)
        coarse.getPC().setFactorSolverType("mumps")
        smooth = mg.getMGSmoother(1)
        smooth.setType("richardson")
        smooth.setTolerances(max_it=1)
        if self.smoother == "learned":
            smooth.getPC().setType("python")
            smooth.getPC().setPythonContext(self.fsai)
        elif self.smoother == "jacobi":
            _set_richardson_scale(smooth, 2.0 / 3.0)
            smooth.getPC().setType("jacobi")
        else:
            smooth.getPC().setType("sor")
        self.mg = mg
        if self.fsai is not None:
            self.fsai.error = None
        try:
            mg.setUp()
        except PETSc.Error:
            self.error = getattr(self.fsai, "error", None)   # the smoother's own message, if it failed
            if self.error is not None:
                raise self.error from self.error.__cause__   # not the PETSc.Error, only its wrapper
            raise
        finally:
            P.destroy()             # PCMG holds its own references
            coarse_matrix.destroy()
        self.setup_seconds = time.perf_counter() - t0

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        t0 = time.perf_counter()
        self.mg.apply(x, y)
        self.applications += 1
        self.apply_seconds += time.perf_counter() - t0

    applyTranspose = apply  # noqa: N815 (PETSc's name); the cycle is symmetric

    def _destroy(self) -> None:
        if self.mg is not None:
            self.mg.destroy()
            self.mg = None

    def destroy(self, pc: PETSc.PC | None = None) -> None:
        self._destroy()


def _smoother(net: FSAINet, device: str, origin: str | None = None) -> LearnedFSAI:
    """The learned smoother's PC context; ``origin``: the model file named in ``$DNF_TWOLEVEL_MODEL``."""
    if net.pattern != "A":
        where = f" ({origin}, from $DNF_TWOLEVEL_MODEL)" if origin else ""
        raise DeepnumFemError(f"TwoLevel's smoother network must have pattern 'A', got {net.pattern!r}{where}; "
                              "train one with scripts/train_fsai.py --kind twolevel")
    fsai = LearnedFSAI(net, device=device)
    fsai._what = "TwoLevel's smoother"
    return fsai


def _set_richardson_scale(ksp: PETSc.KSP, scale: float) -> None:
    """``KSPRichardsonSetScale``, which petsc4py does not wrap: through a private options prefix."""
    prefix = f"dnf_twolevel_{id(ksp)}_"
    ksp.setOptionsPrefix(prefix)
    options = PETSc.Options()
    options[f"{prefix}ksp_richardson_scale"] = scale
    ksp.setFromOptions()
    options.delValue(f"{prefix}ksp_richardson_scale")
