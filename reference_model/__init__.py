"""The reference AIME world model: every component implementing its contract in `contracts/`.

`AimeWorldModel(cfg).forward_sequence(observations, actions)` runs the seed's forward pass;
`Trainer(model, cfg).step(observations, actions)` one RGB-balanced training step.
"""

from reference_model.adversarial import Discriminator
from reference_model.attention import AttentionSchema, SlotAttention
from reference_model.balancing import RGB, PCGrad, SumBalancer
from reference_model.dynamics import LSTMLayer
from reference_model.losses import TaskLosses, check_losses, compute_losses
from reference_model.perceiver import CausalPerceiverIO, VQPTTokenizer
from reference_model.prior import DPGMMPrior
from reference_model.synthetic import moving_shapes
from reference_model.trainer import NonFiniteLoss, Trainer
from reference_model.vae import VAEDecoder, VAEEncoder
from reference_model.world import AimeWorldModel, build_model

__all__ = [
    "RGB",
    "AimeWorldModel",
    "AttentionSchema",
    "CausalPerceiverIO",
    "DPGMMPrior",
    "Discriminator",
    "LSTMLayer",
    "NonFiniteLoss",
    "PCGrad",
    "SlotAttention",
    "SumBalancer",
    "TaskLosses",
    "Trainer",
    "VAEDecoder",
    "VAEEncoder",
    "VQPTTokenizer",
    "build_model",
    "check_losses",
    "compute_losses",
    "moving_shapes",
]
