"""Pillar 5 (balancing): RGB, rotation-based gradient balancing of the task gradients."""

from typing import Annotated, ClassVar

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract, Stateful, invariants


class RGB(Contract):
    """grads [num_tasks, P] (one flattened gradient per task) -> one balanced gradient [P]."""

    pillar = "balancing"
    free_dims: ClassVar[dict[str, int]] = {"num_tasks": 4, "P": 1000}  # free per call; values for drawing

    @invariants(Stateful("the consensus direction and rotation angles carry over to the next step"))
    def balance(self, grads: Float[Tensor, "num_tasks P"]) -> Annotated[Float[Tensor, "P"], "balanced_grad"]:
        """grads [num_tasks, P] -> balanced_grad [P]."""
        ...
