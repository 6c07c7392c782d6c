"""Application models built on the public API: cardiac electrophysiology (monodomain).

Import from the submodules: ``ionic`` (Aliev–Panfilov, Mitchell–Schaeffer, hybrid),
``monodomain`` (the split model, stimuli, activation times) and ``fibres`` (rule-based
fibre fields).
"""

from deepnum_fem.models.fibres import rule_based_fibres, transmural_coordinate
from deepnum_fem.models.ionic import AlievPanfilov, HybridIonic, IonicModel, MitchellSchaeffer
from deepnum_fem.models.monodomain import Monodomain, Stimulus, activation_times, soft_activation_times

__all__ = ["AlievPanfilov", "HybridIonic", "IonicModel", "MitchellSchaeffer", "Monodomain", "Stimulus",
           "activation_times", "rule_based_fibres", "soft_activation_times", "transmural_coordinate"]
