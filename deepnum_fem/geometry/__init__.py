"""Meshes from gmsh: generators for the demos, built on rank 0 and distributed.

Transitional: the former ``geometry.py`` moved whole to ``geometry/coast.py`` (so that git
follows its history into the package); the next commit splits it into one module per subject.
"""

from deepnum_fem.geometry.coast import *  # noqa: F403
from deepnum_fem.geometry.coast import (  # noqa: F401  (names other modules, scripts and tests import)
    __all__,
    _check_city,
    _check_coast,
    _city_blocks_model,
    _coastal_model,
    _gmsh,
    _left_ventricle_model,
    _model,
    _signed_area,
)
