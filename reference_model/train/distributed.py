"""Multi-process training under `torchrun`: process group, batch sharding, gradient averaging.

    torchrun --nproc_per_node=2 -m aimespec.cli train --data walker.npz --deterministic ...

`setup()` reads torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
`MASTER_PORT`) and joins the process group: NCCL when training on CUDA (one GPU per local
rank), gloo on CPU. Without those variables it is a plain single process.

Every rank draws the same global batch (the same sampling seed) and keeps its own
contiguous slice (`shard`). Every loss is a batch mean, so the global batch's gradient is
the row-weighted sum of the slices' gradients: `grad_reducer` all-reduces the `[num_tasks, P]`
task gradients (and the discriminator's `[1, P_disc]`) with weights `rows_rank / rows`, so
that every rank balances the same gradients and applies the same update. With per-example
noise (`reference_model.noise.per_example`, keyed by the loader's per-row seeds) the result
equals one process training on the whole batch, up to floating-point summation order.
Only rank 0 writes logs, figures and checkpoints.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from aimespec import UsageError

# How long a collective waits for a rank that has stopped before failing instead of hanging.
TIMEOUT = timedelta(minutes=10)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = CPU
    backend: str | None = None  # "gloo" / "nccl" when a process group was joined here

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """`None`/"auto": CUDA (this local rank's GPU) when available, else the CPU."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but torch sees no CUDA device.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        elif device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device} was asked for but torch sees {torch.cuda.device_count()} "
                             "CUDA device(s) (cuda:0 ...).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for but torch sees no MPS device.")
    return device


def setup(device: str | torch.device | None = None) -> Distributed:
    """Join torchrun's process group when `WORLD_SIZE > 1` (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(device=resolve_device(device))
    if not dist.is_available():
        raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed.")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    joined = None
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
        joined = backend
    return Distributed(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=joined)


def teardown(d: Distributed, clean: bool = True) -> None:
    """Barrier (after a clean run: every rank is done), then leave the process group `setup` joined.
    After an error no barrier: a rank that failed alone must not keep the others waiting."""
    if d.enabled and dist.is_initialized():
        try:
            if clean:
                barrier(d)
        finally:
            if d.backend is not None:
                dist.destroy_process_group()


def barrier(d: Distributed) -> None:
    if d.enabled:
        if d.device.type == "cuda":
            dist.barrier(device_ids=[d.device.index])
        else:
            dist.barrier()


def shard(d: Distributed, rows: int) -> slice:
    """This rank's contiguous slice of a global batch of `rows` rows (sizes differ by at most 1)."""
    if rows < d.world_size:
        raise UsageError(
            f"a batch of {rows} rows cannot be split over {d.world_size} processes: "
            f"raise batch_size (--set batch_size={d.world_size}) or collect more episodes."
        )
    base, extra = divmod(rows, d.world_size)
    start = d.rank * base + min(d.rank, extra)
    return slice(start, start + base + (1 if d.rank < extra else 0))


def make_grad_reducer(local_rows: int, global_rows: int) -> Callable[[Tensor], Tensor]:
    """`grads [num_tasks, P] -> [num_tasks, P]`: the global batch's gradient, on every rank
    (the sum over ranks of `grads * local_rows / global_rows`)."""
    weight = local_rows / global_rows

    def grad_reducer(grads: Tensor) -> Tensor:
        out = grads.detach() * weight
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    return grad_reducer


def worst(d: Distributed, status: Tensor) -> Tensor:
    """`status [n]` (per loss: 0 finite, 1 infinite, 2 NaN) -> its maximum over every rank, so that
    all ranks agree to stop, on the same terms."""
    if not d.enabled:
        return status
    flags = status.detach().to(device=d.device, dtype=torch.float32).clone()
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.cpu()


def reduce_report(d: Distributed, report: dict[str, float], local_rows: int, global_rows: int) -> dict[str, float]:
    """The global batch's value of every reported number (row-weighted mean over ranks)."""
    if not d.enabled:
        return report
    keys = sorted(report)
    values = torch.tensor([report[k] for k in keys], dtype=torch.float64, device=d.device) * (local_rows / global_rows)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.cpu().tolist(), strict=True))


def broadcast_parameters(d: Distributed, module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (the same starting point, whatever the init)."""
    if not d.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


__all__ = [
    "Distributed",
    "barrier",
    "broadcast_parameters",
    "make_grad_reducer",
    "reduce_report",
    "resolve_device",
    "setup",
    "shard",
    "teardown",
    "worst",
]
