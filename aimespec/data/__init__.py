"""Real data for the AIME world model: dm_control pixel episodes on disk and batches for training.

    from aimespec.data import collect, load_episodes, batches
    data = collect("walker-walk", episodes=20, length=64)      # needs the `dmc` extra
    data.save("walker.npz")
    data = load_episodes("walker.npz", cfg)                      # validated, and checked against cfg
    for batch in batches(data, batch_size=8, seq_len=16, seed=0):
        out = model.forward_sequence(batch.observations, batch.actions)

This package imports without dm_control; only `collect` and `action_dim_for` need it.
"""

from aimespec.data._dmc import PartialCollection, action_dim_for, action_spec, collect, resolve_task
from aimespec.data._episodes import DataError, EpisodeData, load_episodes, save_or_rescue
from aimespec.data._loader import Batch, batch_size_for, batches

__all__ = [
    "Batch",
    "DataError",
    "EpisodeData",
    "PartialCollection",
    "action_dim_for",
    "action_spec",
    "batch_size_for",
    "batches",
    "collect",
    "load_episodes",
    "resolve_task",
    "save_or_rescue",
]
