"""`Trainer`: one AIME training step (the seed's "PILLAR 5: RGB GRADIENT BALANCING").

    out    = model.forward_sequence(observations, actions)
    losses = [L_ELBO, L_perceiver, L_predictive, L_adversarial]
    grads  = [4, P]   one flattened gradient per task over every generator parameter
    grads  = grad_reducer(grads)            # optional: the distributed trainer averages ranks
    g      = balancer.balance(grads)        # [P], RGB by default
    g      = g * min(1, grad_clip / ||g||)  # clip the balanced vector
    unflatten g into .grad; generator Adam step
    discriminator: BCE(real observations -> 1, detached reconstructions -> 0), its own Adam

Where the task gradients are balanced (`balance_at`):
- "parameters" (the default, the seed's method): the four `[P]` task gradients, one backward
  pass each (the graph is kept for the next task and freed by the last one);
- "outputs" (approximate, ~1.1x a summed-loss step): the task heads' gradients at the model's
  outputs (the shared representation every loss reads: `[4, R]`, R the outputs' total size,
  from the loss computations alone), balanced there, then ONE backward pass of the balanced
  output gradient into the parameters. With `SumBalancer` it is exactly the parameter-space
  sum; with RGB the rotation acts on output gradients instead of parameter gradients, so the
  update differs, and the consensus carries no momentum between steps (the outputs of two
  batches are of different examples): its RGB is `RGB(cfg.replace(rgb_mu=0))`. A
  `grad_reducer` then averages the balanced `[P]` gradient across processes.

With `example_ids`, the forward runs inside `noise.per_example(...)`: each example's
noise depends on its id and the step only, not on the batch it shares, so the mean of
two half-batch gradients equals the full batch's (every loss is a batch mean).
"""

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, AimespecError
from contracts.world import WorldOutputs
from reference_model import noise
from reference_model.balancing import RGB
from reference_model.losses import TASKS, TaskLosses, check_losses, compute_losses, discriminator_loss
from reference_model.world import AimeWorldModel

# Per-example seeds are `seed_base + step * NOISE_STEP_STRIDE + example_id`: fresh noise every
# step, the same noise for an example whichever batch (or process) it lands in.
NOISE_STEP_STRIDE = 2**32

GradReducer = Callable[[Tensor], Tensor]
StatusReducer = Callable[[Tensor], Tensor]  # per-loss status [n] (0 finite, 1 inf, 2 NaN) -> the agreed one
Stage = Literal["losses", "gradients", "discriminator"]
BalanceAt = Literal["parameters", "outputs"]
BALANCE_AT: tuple[BalanceAt, ...] = ("parameters", "outputs")


class NonFiniteLoss(AimespecError):
    """A loss, a sub-term or a task gradient was NaN or Inf; raised before any parameter update.

    `terms`: each bad loss, sub-term or task (its gradient) -> its value (NaN or +-Inf);
    `step`: the step count it happened at; `stage`: which check found it ("losses": every
    process agreed on it before any gradient was taken; "gradients"; "discriminator").
    """

    def __init__(self, message: str, terms: dict[str, float] | None = None, *, step: int | None = None,
                 stage: Stage = "losses") -> None:
        super().__init__(message)
        self.terms: dict[str, float] = dict(terms or {})
        self.step, self.stage = step, stage


def _status(values: Tensor) -> Tensor:
    """0 finite, 1 infinite, 2 NaN, per entry (a float tensor, for a max across processes)."""
    return torch.isinf(values).float() + 2 * torch.isnan(values).float()

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.terms)


def flatten_grads(grads: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Float[Tensor, "P"]:
    """One vector `[P]` from per-parameter gradients (None, an unused parameter, as zeros)."""
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)
    ])


def flatten_into(row: Float[Tensor, "P"], grads: tuple[Tensor | None, ...], sizes: list[int]) -> None:
    """Write per-parameter gradients into one preallocated row `[P]` (None, unused: zeros), in order
    (no `[P]` copy per task besides the row itself)."""
    offset = 0
    for g, n in zip(grads, sizes, strict=True):
        if g is None:
            row[offset:offset + n].zero_()
        else:
            row[offset:offset + n].copy_(g.reshape(-1))
        offset += n


def _point_grads_into(row: Float[Tensor, "P"], params: list[nn.Parameter], sizes: list[int]
                      ) -> list[tuple[int, Tensor]]:
    """Each parameter's `.grad` a view of its part of the zeroed `row` (a backward pass then accumulates
    there in place); each part's (data pointer, flat slice)."""
    out, offset = [], 0
    for p, n in zip(params, sizes, strict=True):
        part = row[offset:offset + n]
        p.grad = part.view_as(p)
        out.append((part.data_ptr(), part))
        offset += n
    return out


def unflatten_into_grad(vector: Float[Tensor, "P"], params: list[nn.Parameter]) -> None:
    """Write `vector [P]` into the parameters' `.grad`, in order."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = vector[offset:offset + n].view_as(p).clone()
        offset += n


def balancer_state(balancer: Any) -> dict[str, Any]:
    """The state a balancer carries between calls: its `state_dict()`, else its attributes
    (RGB's consensus and angles, PCGrad's shuffling generator), the config left out."""
    if hasattr(balancer, "state_dict"):
        return {"state_dict": balancer.state_dict()}
    attrs = {}
    for key, value in vars(balancer).items():
        if key == "cfg":
            continue
        attrs[key] = ("generator", value.get_state()) if isinstance(value, torch.Generator) else value
    return {"attributes": attrs}


def load_balancer_state(balancer: Any, state: dict[str, Any]) -> None:
    """Restore what `balancer_state` saved."""
    if "state_dict" in state:
        balancer.load_state_dict(state["state_dict"])
        return
    for key, value in state["attributes"].items():
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "generator":
            generator = torch.Generator()
            generator.set_state(value[1])
            value = generator
        setattr(balancer, key, value)


def _floats(losses: TaskLosses, out: WorldOutputs) -> dict[str, float]:
    """The step's report: every loss and term, and the codebook's perplexity, as Python floats."""
    report = {name: float(v.detach()) for name, v in losses.items().items()}
    report["perplexity"] = float(out.perplexity.detach())
    return report


class Trainer:
    """Generator (world model) and discriminator optimisers, RGB balancing of four tasks.

    `balancer`: anything with `.balance(grads [num_tasks, P]) -> [P]` (default `RGB(cfg)`).
    `grad_reducer`: called on the task gradients `[4, P]` and the discriminator's gradient
    `[1, P_disc]` before they are used (a distributed trainer averages them across ranks).
    `status_reducer`: called on the losses' finiteness status (0 finite, 1 inf, 2 NaN per loss)
    before it is judged (a distributed trainer takes the worst over ranks, so all stop together).
    """

    def __init__(
        self,
        model: AimeWorldModel,
        cfg: AimeConfig,
        balancer: Any = None,
        grad_reducer: GradReducer | None = None,
        *,
        status_reducer: StatusReducer | None = None,
        balance_at: BalanceAt = "parameters",
        seed_base: int = 0,
        disc_learning_rate: float | None = None,
    ) -> None:
        if balance_at not in BALANCE_AT:
            raise ValueError(f"balance_at must be one of {', '.join(BALANCE_AT)}, got {balance_at!r}")
        self.model = model
        self.cfg = cfg
        self.balance_at: BalanceAt = balance_at
        if balancer is None:
            balancer = RGB(cfg) if balance_at == "parameters" else RGB(cfg.replace(rgb_mu=0.0))
        self.balancer = balancer
        self.grad_reducer = grad_reducer
        self.status_reducer = status_reducer
        self.seed_base = int(seed_base)
        self.discriminator = model.discriminator
        disc_ids = {id(p) for p in self.discriminator.parameters()}
        self.params = [p for p in model.parameters() if p.requires_grad and id(p) not in disc_ids]
        self.sizes = [p.numel() for p in self.params]
        self.disc_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate)
        self.disc_optimizer = torch.optim.Adam(
            self.disc_params, lr=cfg.learning_rate if disc_learning_rate is None else disc_learning_rate
        )
        self.step_count = 0

    # --- the pieces of a step -------------------------------------------------------------
    def noise_seeds(self, example_ids: Tensor | list[int]) -> list[int]:
        """The per-example noise seeds of this step for `example_ids`."""
        ids = example_ids.tolist() if torch.is_tensor(example_ids) else list(example_ids)
        return [self.seed_base + self.step_count * NOISE_STEP_STRIDE + int(i) for i in ids]

    def forward(self, observations: Tensor, actions: Tensor, example_ids: Tensor | list[int] | None = None
                ) -> tuple[WorldOutputs, TaskLosses]:
        """`forward_sequence` (per-example noise when ids are given) and the task losses."""
        if example_ids is not None and len(example_ids) != observations.shape[0]:
            raise ValueError(
                f"example_ids has {len(example_ids)} ids for a batch of {observations.shape[0]} videos"
            )
        out = self.outputs(observations, actions, example_ids)
        return out, compute_losses(out, observations, self.discriminator)

    def outputs(self, observations: Tensor, actions: Tensor, example_ids: Tensor | list[int] | None = None
                ) -> WorldOutputs:
        """`forward_sequence`, with per-example noise when ids are given (the losses draw none)."""
        if example_ids is None:
            return self.model.forward_sequence(observations, actions)
        with noise.per_example(self.noise_seeds(example_ids)):
            return self.model.forward_sequence(observations, actions)

    def ensure_finite(self, losses: TaskLosses) -> None:
        """Raise `NonFiniteLoss` naming every NaN/Inf loss or term and the step (agreed across
        processes through `status_reducer`: every rank stops at the same step, on the same terms)."""
        items = losses.items()
        status = _status(torch.stack([v.detach().reshape(()).float() for v in items.values()]).cpu())
        if self.status_reducer is not None:
            status = self.status_reducer(status)
        bad = {name: (math.nan if s >= 2 else math.inf) for name, s in zip(items, status.tolist(), strict=True) if s}
        if bad:
            values = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise NonFiniteLoss(f"non-finite loss at step {self.step_count}: {values}; no parameter was updated",
                                step=self.step_count, terms=bad, stage="losses")

    def ensure_finite_gradients(self, grads: Float[Tensor, "4 P"]) -> None:
        """Raise `NonFiniteLoss` naming every task whose gradient holds NaN or Inf."""
        finite = torch.isfinite(grads).all(dim=1)
        if not bool(finite.all()):
            nan = torch.isnan(grads).any(dim=1).tolist()
            bad = {name: (math.nan if is_nan else math.inf)
                   for name, ok, is_nan in zip(TASKS, finite.tolist(), nan, strict=True) if not ok}
            raise NonFiniteLoss(
                f"non-finite gradient of {', '.join(bad)} at step {self.step_count}; no parameter was updated",
                step=self.step_count, terms=bad, stage="gradients",
            )

    def ensure_finite_discriminator(self, loss: Tensor, grad: Tensor) -> None:
        """Raise `NonFiniteLoss` when the discriminator's loss or gradient holds NaN or Inf."""
        if not (torch.isfinite(loss) and torch.isfinite(grad).all()):
            value = float(loss) if not torch.isfinite(loss) else math.nan
            raise NonFiniteLoss(
                f"non-finite loss at step {self.step_count}: discriminator={loss.item()}; no parameter was updated",
                step=self.step_count, terms={"discriminator": value}, stage="discriminator",
            )

    def task_gradients(self, losses: TaskLosses) -> Float[Tensor, "4 P"]:
        """One flattened gradient per task over every generator parameter, `[4, P]`. The graph is
        kept while a later task still needs it and freed by the last backward pass. Each backward
        pass accumulates straight into its task's row (every parameter's `.grad` a view of it), so
        no second copy of a task's gradients is held beside the rows; the `.grad`s are restored after."""
        grads = torch.zeros(len(TASKS), sum(self.sizes), dtype=self.params[0].dtype, device=self.params[0].device)
        attached = [i for i, name in enumerate(TASKS) if losses.tasks[name].requires_grad]
        saved = [p.grad for p in self.params]
        try:
            for i in attached:
                slices = _point_grads_into(grads[i], self.params, self.sizes)
                torch.autograd.backward(losses.tasks[TASKS[i]], inputs=self.params, retain_graph=i != attached[-1])
                for p, (view_ptr, part) in zip(self.params, slices, strict=True):
                    if p.grad is not None and p.grad.data_ptr() != view_ptr:  # accumulated out of place
                        part.copy_(p.grad.reshape(-1))
                    p.grad = None
        finally:
            for p, g in zip(self.params, saved, strict=True):
                p.grad = g
        return grads

    def compute_task_gradients(
        self, observations: Tensor, actions: Tensor, example_ids: Tensor | list[int] | None = None
    ) -> tuple[Float[Tensor, "4 P"], TaskLosses, WorldOutputs]:
        """Forward, losses (checked finite) and the `[4, P]` task gradients, with no update."""
        out, losses = self.forward(observations, actions, example_ids)
        self.ensure_finite(losses)
        check_losses(losses)
        return self.task_gradients(losses), losses, out

    def balanced_at_parameters(self, observations: Tensor, actions: Tensor,
                               example_ids: Tensor | list[int] | None) -> tuple[Tensor, dict[str, float], Tensor]:
        """The seed's method: RGB over the four `[P]` task gradients -> (balanced [P], report, fake videos)."""
        grads, losses, out = self.compute_task_gradients(observations, actions, example_ids)
        report = _floats(losses, out)
        fake = out.reconstructions.detach()
        del losses, out  # the last task's backward freed the graph; nothing else holds it
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        self.ensure_finite_gradients(grads)
        return self.balancer.balance(grads), report, fake

    def output_gradients(self, out: WorldOutputs, observations: Tensor
                         ) -> tuple[Float[Tensor, "4 R"], list[Tensor], TaskLosses]:
        """The task heads' gradients `[4, R]` at the model's outputs (the loss computations run on
        detached copies of them), the attached outputs they belong to, and the losses."""
        attached = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)
                    if getattr(out, f.name).requires_grad}
        leaves = {name: value.detach().requires_grad_(True) for name, value in attached.items()}
        losses = compute_losses(dataclasses.replace(out, **leaves), observations, self.discriminator)
        self.ensure_finite(losses)
        check_losses(losses)
        sizes = [value.numel() for value in leaves.values()]
        grads = torch.zeros(len(TASKS), sum(sizes), dtype=observations.dtype, device=observations.device)
        for i, name in enumerate(TASKS):
            if losses.tasks[name].requires_grad:
                per_output = torch.autograd.grad(losses.tasks[name], list(leaves.values()),
                                                 retain_graph=i < len(TASKS) - 1, allow_unused=True)
                flatten_into(grads[i], per_output, sizes)
        return grads, list(attached.values()), losses

    def balanced_at_outputs(self, observations: Tensor, actions: Tensor,
                            example_ids: Tensor | list[int] | None) -> tuple[Tensor, dict[str, float], Tensor]:
        """Approximate: balance the output gradients, then one backward pass into the parameters."""
        out = self.outputs(observations, actions, example_ids)
        head_grads, attached, losses = self.output_gradients(out, observations)
        report = _floats(losses, out)
        fake = out.reconstructions.detach()
        del losses, out
        if self.grad_reducer is None:
            self.ensure_finite_gradients(head_grads)
        cotangent = self.balancer.balance(head_grads)  # [R]
        pieces = torch.split(cotangent, [t.numel() for t in attached])
        per_param = torch.autograd.grad(attached, self.params, allow_unused=True,
                                        grad_outputs=[c.view_as(t) for c, t in zip(pieces, attached, strict=True)])
        balanced = torch.empty(sum(self.sizes), dtype=cotangent.dtype, device=cotangent.device)
        flatten_into(balanced, per_param, self.sizes)
        del per_param, attached
        if self.grad_reducer is not None:  # every rank checks the same reduced vector: all stop together
            balanced = self.grad_reducer(balanced.unsqueeze(0)).squeeze(0)
            if not bool(torch.isfinite(balanced).all()):
                self.ensure_finite_gradients(head_grads)  # names this rank's bad tasks, if any
                self.ensure_finite_gradients(balanced.expand(len(TASKS), -1))  # else: another rank's
        return balanced, report, fake

    # --- one step ---------------------------------------------------------------------------
    def step(self, observations: Tensor, actions: Tensor, example_ids: Tensor | list[int] | None = None
             ) -> dict[str, float]:
        """One generator and one discriminator update; the losses as Python floats.

        Atomic: every gradient (the four tasks' and the discriminator's) is computed, reduced
        across processes and checked finite before any parameter moves, so a NaN anywhere
        leaves the whole training state as it was (and every rank raises together).
        """
        self.model.train()
        if self.balance_at == "parameters":
            balanced, report, fake = self.balanced_at_parameters(observations, actions, example_ids)
        else:
            balanced, report, fake = self.balanced_at_outputs(observations, actions, example_ids)
        disc_loss, disc_grad = self.discriminator_gradient(observations, fake)
        if self.grad_reducer is not None:
            disc_grad = self.grad_reducer(disc_grad.unsqueeze(0)).squeeze(0)
        self.ensure_finite_discriminator(disc_loss, disc_grad)
        norm = balanced.norm()
        balanced = balanced * (self.cfg.grad_clip / norm.clamp_min(1e-12)).clamp(max=1.0)
        self.optimizer.zero_grad(set_to_none=True)
        unflatten_into_grad(balanced, self.params)
        self.optimizer.step()
        self.disc_optimizer.zero_grad(set_to_none=True)
        unflatten_into_grad(disc_grad, self.disc_params)
        self.disc_optimizer.step()

        self.step_count += 1
        report.update(discriminator=float(disc_loss), grad_norm=float(norm.detach()))
        return report

    def discriminator_gradient(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Float[Tensor, "P_disc"]]:
        """The discriminator's loss on real videos vs detached reconstructions, and its flat gradient."""
        loss = discriminator_loss(self.discriminator, real, fake.detach())
        grads = torch.autograd.grad(loss, self.disc_params, allow_unused=True)
        return loss.detach(), flatten_grads(grads, self.disc_params)

    # --- checkpoint / resume ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy) of the whole training state: model, both optimisers,
        the balancer's state, the step counter and the noise seed base."""
        return copy.deepcopy({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "disc_optimizer": self.disc_optimizer.state_dict(),
            "balancer": balancer_state(self.balancer),
            "step_count": self.step_count,
            "seed_base": self.seed_base,
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()`'s snapshot (copied: the snapshot stays untouched)."""
        state = copy.deepcopy(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        load_balancer_state(self.balancer, state["balancer"])
        self.step_count = int(state["step_count"])
        self.seed_base = int(state.get("seed_base", self.seed_base))


__all__ = ["NOISE_STEP_STRIDE", "NonFiniteLoss", "Trainer", "flatten_grads", "unflatten_into_grad"]
