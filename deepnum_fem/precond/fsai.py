"""A learned factorised sparse approximate inverse (FSAI) preconditioner.

For an SPD matrix ``A`` with diagonal ``D`` and ``Â = D^{-1/2} A D^{-1/2}``, a network predicts
the values of a lower-triangular ``Ĝ`` on the pattern of ``tril(Â²)``; the preconditioner is

    M = Gᵀ G,   G = Ĝ D^{-1/2},   so that  M ≈ A^{-1}  when  ĜᵀĜ ≈ Â^{-1}.

``M`` is symmetric positive definite whenever ``Ĝ`` has a positive diagonal (the network's
diagonal output passes through softplus), so it is used with CG. Each nonzero's value comes
from an MLP on local graph features of the matrix: the scaled entries ``â_ij`` and
``(Â²)_ij``, and at both ends the row's nonzero count and scaled row sum. The network
is initialised so that ``Ĝ = I`` (Jacobi) and trained without solutions by minimising
``E‖Â ĜᵀĜ r − r‖² / ‖r‖²`` over random ``r`` and over a family of operators.

Parallel design: setup forms ``Â²`` with PETSc (``MatMatMult``), reads each rank's rows,
fetches the column-node features it needs from their owners with one ``VecScatter`` per
feature, evaluates the
network on all local nonzeros at once and builds ``G`` as a distributed AIJ matrix;
an application is ``G.mult`` then ``G.multTranspose`` (PETSc does the neighbour exchange).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

from mpi4py import MPI
from petsc4py import PETSc

import numpy as np
import torch

from deepnum_fem.errors import DeepnumFemError, NonFiniteError
from deepnum_fem.parallel import network_name, raise_on_any_rank, user_code
from deepnum_fem.training import load_checkpoint, read_weights, save_checkpoint

__all__ = ["FSAINet", "LearnedFSAI", "factor_pattern", "fsai_loss", "train"]

PATTERNS = {"A2": 7, "A": 6}          # pattern of Ĝ -> number of features per nonzero
_DIAG_COLUMN = {"A2": 2, "A": 1}       # the feature column that flags the diagonal
_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
_SOFTPLUS_ONE = math.log(math.e - 1.0)   # softplus(_SOFTPLUS_ONE) == 1
DEFAULT_MODEL = Path(__file__).with_name("fsai_default.pt")
#: The bundled smoother model of :class:`~deepnum_fem.precond.TwoLevel` (used unless ``DNF_TWOLEVEL_MODEL`` is set).
DEFAULT_SMOOTHER = Path(__file__).with_name("twolevel_default.pt")
# kind -> (what it is called, the variable naming its file, the bundled file, how to make one)
_MODEL_FILES = {
    "fsai": ("FSAI model", "DNF_FSAI_MODEL", DEFAULT_MODEL, "scripts/train_fsai.py"),
    "twolevel": ("TwoLevel smoother model", "DNF_TWOLEVEL_MODEL", DEFAULT_SMOOTHER,
                 "scripts/train_fsai.py --kind twolevel"),
}


class FSAINet(torch.nn.Module):
    """Values of ``Ĝ`` from per-nonzero features; starts at ``Ĝ = I``.

    ``pattern`` is the sparsity of ``Ĝ``: ``"A2"`` (``tril(Â²)``, 7 features, the stand-alone
    preconditioner) or ``"A"`` (``tril(Â)``, 6 features, cheap: the two-level smoother).
    """

    def __init__(self, width: int = 32, pattern: str = "A2", hidden: int = 2, activation: str = "tanh"):
        super().__init__()
        if pattern not in PATTERNS:
            raise DeepnumFemError(f"FSAINet pattern must be one of {sorted(PATTERNS)}, got {pattern!r}")
        if activation not in _ACTIVATIONS:
            raise DeepnumFemError(f"FSAINet activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.config = {"width": width, "pattern": pattern, "hidden": hidden, "activation": activation}
        self.pattern = pattern
        layers, size = [], PATTERNS[pattern]
        for _ in range(hidden):
            layers += [torch.nn.Linear(size, width), _ACTIVATIONS[activation]()]
            size = width
        self.body = torch.nn.Sequential(*layers, torch.nn.Linear(size, 2))
        torch.nn.init.zeros_(self.body[-1].weight)
        torch.nn.init.zeros_(self.body[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.body(features)
        is_diag = features[:, _DIAG_COLUMN[self.pattern]] > 0.5
        return torch.where(is_diag, torch.nn.functional.softplus(out[:, 0] + _SOFTPLUS_ONE), out[:, 1])


def factor_pattern(A: PETSc.Mat, pattern: str = "A2",
                   dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pattern and features of ``Ĝ`` for the rows of ``A`` this rank owns (collective).

    The pattern is ``tril(Â²)`` (two hops in the matrix graph) or ``tril(Â)``. Per nonzero
    ``(i, j)`` the features are ``[â_ij, (Â²)_ij, i == j, deg_i / 10, deg_j / 10, s_i, s_j]``
    (``"A2"``) or the same without ``(Â²)_ij`` (``"A"``), with ``deg`` the row's nonzero count
    in ``A`` and ``s`` the row sum of ``Â``. Returns global ``rows``, ``cols``, the features and
    the diagonal ``a_jj`` at each nonzero's column.
    """
    comm = A.getComm().tompi4py()
    rstart, rend = A.getOwnershipRange()
    n_local = rend - rstart
    diag_vec = A.getDiagonal()
    diag = diag_vec.getArray(readonly=True)
    bad = int(np.any(diag <= 0))
    if comm.allreduce(bad, op=MPI.MAX):
        raise DeepnumFemError("LearnedFSAI needs a matrix with a positive diagonal (an SPD operator)"
                              + ("" if bad else ": another rank found a non-positive diagonal entry"))
    scale = diag_vec.duplicate()
    scale.getArray()[:] = 1.0 / np.sqrt(diag)
    Ahat = A.duplicate(copy=True)
    Ahat.diagonalScale(scale, scale)
    p1, c1, v1 = Ahat.getValuesCSR()
    r1 = rstart + np.repeat(np.arange(n_local, dtype=np.int64), np.diff(p1))
    if pattern == "A2":
        A2 = Ahat.matMult(Ahat)
        p2, c2, v2 = A2.getValuesCSR()
        A2.destroy()
        r2 = rstart + np.repeat(np.arange(n_local, dtype=np.int64), np.diff(p2))
        N = A.getSize()[0]
        keys1 = r1 * N + c1
        keys2 = r2 * N + c2
        lower = c2 <= r2
        rows, cols, sq = r2[lower], c2[lower].astype(np.int64), v2[lower]
        at = np.clip(np.searchsorted(keys1, keys2[lower]), 0, len(keys1) - 1)
        ahat = np.where(keys1[at] == keys2[lower], v1[at], 0.0)
        first = [ahat, sq]
    else:
        lower = c1 <= r1
        rows, cols = r1[lower], c1[lower].astype(np.int64)
        first = [v1[lower]]

    node = diag_vec.duplicate()
    mask = np.zeros(A.getSize()[1], dtype=bool)     # the columns this rank needs, without a sort
    mask[cols] = True
    needed = np.flatnonzero(mask)
    where = (np.cumsum(mask) - 1)[cols]
    deg = np.diff(p1).astype(float)
    rsum = np.bincount(r1 - rstart, weights=v1, minlength=n_local)
    col_diag = _gather(diag_vec, needed)[where]
    node.getArray()[:] = deg
    col_deg = _gather(node, needed)[where]
    node.getArray()[:] = rsum
    col_sum = _gather(node, needed)[where]
    li = rows - rstart
    columns = [*first, rows == cols, deg[li] / 10.0, col_deg / 10.0, rsum[li], col_sum]
    features = np.empty((len(rows), len(columns)), dtype=dtype)   # filled in place: no float64 stack
    for k, column in enumerate(columns):
        features[:, k] = column
    for obj in (scale, Ahat, node, diag_vec):
        obj.destroy()
    return rows, cols, features, col_diag


def _spmm(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(n, x.shape[1], dtype=x.dtype).index_add_(0, rows, vals[:, None] * x[cols])


class TrainingMatrix:
    """One SPD matrix of the training family, on one process, as torch COO arrays.

    With ``coarse=True`` it also holds the two-level method's aggregates and the Cholesky factor
    of its (small, dense) coarse matrix ``PᵀÂP``, for :func:`~deepnum_fem.precond.twolevel.two_level_loss`.
    """

    def __init__(self, A: PETSc.Mat, pattern: str = "A2", coarse: bool = False):
        if A.getComm().getSize() != 1:
            raise DeepnumFemError("training matrices live on one process (assemble them on MPI.COMM_SELF)")
        rows, cols, features, _ = factor_pattern(A, pattern)
        self.n = A.getSize()[0]
        self.features = torch.from_numpy(features)
        self.g_rows, self.g_cols = torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(cols)
        indptr, indices, data = A.getValuesCSR()
        a_rows = np.repeat(np.arange(self.n), np.diff(indptr))
        diag = A.getDiagonal().getArray(readonly=True)
        self.a_rows, self.a_cols = torch.from_numpy(a_rows.astype(np.int64)), torch.from_numpy(indices.astype(np.int64))
        self.a_vals = torch.from_numpy(data / np.sqrt(diag[a_rows] * diag[indices]))
        if coarse:
            from deepnum_fem.precond.aggregation import aggregates

            agg, count = aggregates(A)
            P = torch.zeros(self.n, count, dtype=torch.float64)
            member = np.flatnonzero(agg >= 0)
            P[member, agg[member]] = torch.from_numpy(np.sqrt(diag[member]))   # D^½ P: Â's variables
            Ac = P.T @ self.dense() @ P
            self.P, self.coarse_cholesky = P, torch.linalg.cholesky(Ac)

    def dense(self) -> torch.Tensor:
        """``Â`` as a dense tensor (training matrices are small)."""
        out = torch.zeros(self.n, self.n, dtype=torch.float64)
        out[self.a_rows, self.a_cols] = self.a_vals
        return out

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``Â x`` for ``x`` of shape ``(n, k)``."""
        return _spmm(self.a_rows, self.a_cols, self.a_vals, x, self.n)

    def apply_factor(self, g: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``Ĝ x`` (or ``Ĝᵀ x``) with the factor values ``g`` on this matrix's pattern."""
        if transpose:
            return _spmm(self.g_cols, self.g_rows, g, x, self.n)
        return _spmm(self.g_rows, self.g_cols, g, x, self.n)


def fsai_loss(net: FSAINet, mat: TrainingMatrix, n_vectors: int = 8,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``mean ‖Â ĜᵀĜ r − r‖² / ‖r‖²`` over random Gaussian ``r`` (no solutions needed)."""
    g = net(mat.features)
    r = torch.randn(mat.n, n_vectors, dtype=torch.float64, generator=generator)
    t = mat.apply(mat.apply_factor(g, mat.apply_factor(g, r), transpose=True))   # Â ĜᵀĜ r
    return (((t - r) ** 2).sum(0) / (r**2).sum(0)).mean()


def train(net: FSAINet, matrices: list[TrainingMatrix], *, steps: int = 300, lr: float = 3e-3,
          n_vectors: int = 8, seed: int = 0, checkpoint: Path | None = None, every: int = 50,
          log=print, loss=fsai_loss) -> list[float]:
    """Adam on ``loss`` (:func:`fsai_loss` by default), cycling through ``matrices``; resumes
    from ``checkpoint``.

    Returns the loss history (this call's steps). The checkpoint holds the network, the
    optimiser and the step, written every ``every`` steps and at the end.
    """
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start = int(load_checkpoint(checkpoint, MPI.COMM_SELF, net=net, optimizer=opt)["step"])
        log(f"resumed from {checkpoint} at step {start}")
    history = []
    for step in range(start, steps):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)   # per step: resuming is exact
        opt.zero_grad()
        value = loss(net, matrices[step % len(matrices)], n_vectors, gen)
        value.backward()
        opt.step()
        history.append(value.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            log(f"step {step + 1:5d}/{steps}  loss {np.mean(history[-every:]):.4e}")
            if checkpoint is not None:
                save_checkpoint(checkpoint, MPI.COMM_SELF, net=net, optimizer=opt, step=step + 1)
    return history


class LearnedFSAI:
    """PETSc python-PC context applying ``M = Gᵀ G`` with ``G`` predicted by an :class:`FSAINet`.

    Usable by object (``pc.setType("python"); pc.setPythonContext(LearnedFSAI(net))``) or by
    options (``-pc_type python -pc_python_type deepnum_fem.precond.fsai.LearnedFSAI``). Without
    ``net`` it reads the model in ``$DNF_FSAI_MODEL``, or the bundled one, at its first setup, on
    every rank: a missing or invalid file is a :class:`~deepnum_fem.errors.DeepnumFemError` there,
    on every rank. Symmetric positive definite: use CG.
    """

    linear = True
    symmetric = True

    def __init__(self, net: FSAINet | None = None, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        # a copy: the caller's network stays as it is
        self.net = None if net is None else copy.deepcopy(net).to(self.device, dtype)
        self.G: PETSc.Mat | None = None
        self.t: PETSc.Vec | None = None
        self.error = None
        self.setup_seconds = 0.0
        self.applications = 0
        self.apply_seconds = 0.0
        self._what = "LearnedFSAI"     # how messages name this preconditioner (TwoLevel: its smoother)

    def setUp(self, pc: PETSc.PC) -> None:  # noqa: N802 (PETSc's name)
        t0 = time.perf_counter()
        _, P = pc.getOperators()
        if self.G is not None:
            self.G.destroy()
        try:
            if self.net is None:
                self.net = load_model(kind="fsai", comm=P.getComm().tompi4py()).to(self.device, self.dtype)
            self.G = build_factor(P, self.net, self.device, what=self._what)
        except DeepnumFemError as e:
            self.error = e     # kept for precond.solve(): PETSc wraps exceptions raised in callbacks
            raise
        self.t = self.G.createVecLeft()
        self.setup_seconds = time.perf_counter() - t0

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        t0 = time.perf_counter()
        self.G.mult(x, self.t)
        self.G.multTranspose(self.t, y)
        self.applications += 1
        self.apply_seconds += time.perf_counter() - t0

    applyTranspose = apply  # noqa: N815 (PETSc's name); M is symmetric


def load_model(path: str | Path | None = None, *, kind: str = "fsai", comm: MPI.Comm | None = None) -> FSAINet:
    """The :class:`FSAINet` (float64) in the file ``path``, else in ``$DNF_FSAI_MODEL`` (``kind="fsai"``)
    or ``$DNF_TWOLEVEL_MODEL`` (``kind="twolevel"``), else the bundled one; files as
    ``scripts/train_fsai.py`` writes them (``{"net": state_dict, "config": …}``).

    A missing or invalid file raises a :class:`~deepnum_fem.errors.DeepnumFemError` that names
    it, where it came from and what to do; with ``comm``, on every rank of it, whichever rank
    failed (collective). Only tensors and plain values are read (``torch.load(weights_only=True)``).
    """
    import os

    name, variable, default, command = _MODEL_FILES[kind]
    if path:
        origin, remedy = "", f"train one with {command}"
    elif os.environ.get(variable):
        path = os.environ[variable]
        origin = f" (from ${variable})"
        remedy = f"point {variable} at a model written by {command}, or unset it to use the bundled model"
    else:
        path, origin, remedy = default, " (the bundled model)", "reinstall deepnum-fem"
    path = Path(path)
    net = None
    payload, problem = read_weights(path)
    if problem is None:
        if not isinstance(payload.get("net"), dict):
            problem = f"it has no 'net' entry of weights (it holds {sorted(payload)})"
        else:
            config = payload.get("config", {"width": int(payload.get("width", 32))})   # older files: width only
            try:
                net = FSAINet(**config).double()
                net.load_state_dict(payload["net"])
            except Exception as e:  # noqa: BLE001  (a wrong config or state dict: the file's fault)
                problem = f"its weights do not fit FSAINet({config}) ({type(e).__name__}: {e})"
    error = (None if problem is None else
             DeepnumFemError(f"no {name} at {path}{origin}; {remedy}") if problem == "it does not exist" else
             DeepnumFemError(f"{path}{origin} is not a valid model file: {problem}; {remedy}"))
    if comm is not None:
        raise_on_any_rank(error, comm)
    elif error is not None:
        raise error
    return net


def build_factor(A: PETSc.Mat, net: FSAINet, device: torch.device | str = "cpu", *,
                 what: str = "LearnedFSAI") -> PETSc.Mat:
    """The distributed lower-triangular ``G`` for the rows of ``A`` this rank owns (collective).

    The network runs in its own dtype (float32 by default in :class:`LearnedFSAI`: a
    preconditioner needs no more, and it halves the setup's network time). An exception in it,
    or NaN/Inf in its output, on any rank raises on every rank (``what`` names the
    preconditioner in the message)."""
    comm = A.getComm().tompi4py()
    rstart, rend = A.getOwnershipRange()
    dtype = next(net.parameters()).dtype
    feature_dtype = np.float32 if dtype == torch.float32 else np.float64
    rows, cols, features, col_diag = factor_pattern(A, net.pattern, feature_dtype)
    with user_code(f"{what}'s network {network_name(net)} (preconditioner setup)", comm), torch.no_grad():
        ghat = net(torch.from_numpy(features).to(device, dtype)).to("cpu", torch.float64).numpy()
        values = ghat / np.sqrt(col_diag)
        if not np.all(np.isfinite(values)):
            raise NonFiniteError(f"{what}: the network produced {int((~np.isfinite(values)).sum())} NaN/Inf "
                                 "factor value(s) on this rank")
    counts = np.bincount(rows - rstart, minlength=rend - rstart)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(PETSc.IntType)
    G = PETSc.Mat().createAIJ(A.getSizes(), comm=A.getComm())
    G.setPreallocationCSR((indptr, cols.astype(PETSc.IntType), values))
    G.assemble()
    return G


def _gather(vec: PETSc.Vec, indices: np.ndarray) -> np.ndarray:
    """Values of the distributed ``vec`` at global ``indices`` (one VecScatter)."""
    target = PETSc.Vec().createSeq(len(indices), comm=PETSc.COMM_SELF)
    index_set = PETSc.IS().createGeneral(indices.astype(PETSc.IntType), comm=PETSc.COMM_SELF)
    scatter = PETSc.Scatter().create(vec, index_set, target, None)
    scatter.scatter(vec, target, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
    out = target.getArray(readonly=True).copy()
    for obj in (scatter, index_set, target):
        obj.destroy()
    return out
