"""The FEM layer, free of torch: owned dofs, forms, controls, pointwise-model nodes and their lowering,
solver options and checks, null spaces, and the forward and adjoint solves."""
