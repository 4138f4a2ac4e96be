"""Training the reference world model on collected episodes (`aimespec train`).

    from aimespec import AimeConfig
    from reference_model.train import train
    result = train("walker.npz", AimeConfig.small(), steps=200, out_dir="runs/walker")
    print(result.step, result.losses["elbo"], result.seconds_per_step)

A run directory holds

- `log.jsonl`: one JSON object per step: `step` (1-based), `time` (Unix seconds), `elapsed`
  (training seconds since the run's first step, resumes included), `seconds` (this step),
  `epoch`, `rows` (the global batch), the four task losses `elbo, perceiver, predictive,
  adversarial`, their sub-terms `reconstruction, kl_z, kl_sticks, kl_alpha, vq,
  tokenizer_reconstruction, attention_dynamics, diversity, gan`, and `discriminator`,
  `grad_norm` (before clipping), `perplexity` (the codebook's), all for the global batch;
- `checkpoint.pt`: the whole training state, written atomically every `checkpoint_every`
  steps and at the end (`train(..., resume=True)` continues it);
- `figures/step_XXXXXX.png`: frames, reconstructions, attention and slot masks.

Under `torchrun` each process trains on its slice of the global batch and the task gradients
are averaged across processes before RGB balancing (`reference_model.train.distributed`).
"""

from reference_model.train.loop import TrainingStopped, TrainResult, batch_stream, epoch_seed, train
from reference_model.train.progress import TrainProgress

__all__ = ["TrainProgress", "TrainResult", "TrainingStopped", "batch_stream", "epoch_seed", "train"]
