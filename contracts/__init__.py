"""Contracts: every AIME component's signature, written once with the seed's dimension symbols.

One module per pillar (perceiver, prior, dynamics, attention, vae, adversarial, balancing,
world). Each class names a component of `AIME_TENSOR_SHAPE_REFERENCE.md`; its methods carry
jaxtyping annotations for shapes and dtypes, and `@invariants` for the Shape Validation
Checklist's value rules. `reference_model/` implements the same names.
"""
