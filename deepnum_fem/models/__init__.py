"""Application models built on the public API: cardiac electrophysiology (monodomain, ionic
models, fibres), coastal shallow water, urban pollutant transport.

The three time-stepping models share one interface, :class:`TimeSteppingModel` (``base``):
``initial_state``, ``step(state, k, **controls)``, ``simulate``, ``sensors``, ``write_xdmf``,
``destroy``. The names below are also in their submodules: ``base``, ``ionic``
(Aliev–Panfilov, Mitchell–Schaeffer, hybrid), ``monodomain`` (the split model, stimuli,
activation times), ``fibres`` (rule-based fibre fields), ``ldrb`` (Laplace–Dirichlet
rule-based fibres, sheets and normals for biventricular meshes), ``shallow_water``, ``transport`` and
``wind`` (a steady Navier–Stokes wind), ``tentusscher`` (the ten Tusscher–Panfilov 2006 human
ventricular cell), ``ecg`` (the pseudo-ECG of a monodomain model and its standard leads).
"""

from deepnum_fem.models.base import Domain, TimeSteppingModel
from deepnum_fem.models.ecg import PseudoECG
from deepnum_fem.models.fibres import rule_based_fibres, transmural_coordinate
from deepnum_fem.models.ionic import AlievPanfilov, HybridIonic, IonicModel, MitchellSchaeffer
from deepnum_fem.models.ldrb import LDRBFibres, ldrb_coordinates, ldrb_fibres
from deepnum_fem.models.monodomain import Monodomain, Stimulus, activation_times, soft_activation_times
from deepnum_fem.models.shallow_water import (
    TIDAL_PERIODS,
    GaugeSensors,
    LearnedDragLaw,
    ShallowWater,
    tide_constituents,
)
from deepnum_fem.models.tentusscher import TenTusscherPanfilov2006
from deepnum_fem.models.transport import (
    NeuralEmission,
    StreetEmission,
    Transport,
    gaussian_source,
    line_source,
    polyline_source,
    potential_flow,
    street_sources,
)
from deepnum_fem.models.wind import SteadyWind, log_law_inflow, parabolic_inflow, wall_distance

__all__ = ["AlievPanfilov", "Domain", "GaugeSensors", "HybridIonic", "IonicModel", "LDRBFibres", "LearnedDragLaw",
           "MitchellSchaeffer", "Monodomain", "NeuralEmission", "PseudoECG", "ShallowWater", "SteadyWind", "Stimulus",
           "StreetEmission", "TimeSteppingModel", "Transport", "activation_times", "gaussian_source", "line_source",
           "log_law_inflow", "wall_distance", "TIDAL_PERIODS", "tide_constituents",
           "parabolic_inflow", "polyline_source", "potential_flow", "rule_based_fibres", "soft_activation_times",
           "street_sources", "TenTusscherPanfilov2006", "transmural_coordinate",
           "ldrb_coordinates", "ldrb_fibres"]
