"""Application models built on the public API: cardiac electrophysiology (monodomain)."""
