"""The torch operations over FEM data: ``fem_operator``, ``functional``, ``ml_operator`` and ``rollout``
(all re-exported by ``deepnum_fem``)."""
