"""Live training progress on stderr: a rich bar with the four task losses on a terminal, a plain
line every tenth of the run otherwise (CI logs, pipes)."""

import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

SHOWN = ("elbo", "perceiver", "predictive", "adversarial")


def _losses(report: dict[str, float]) -> str:
    return "  ".join(f"{name} {report[name]:.4g}" for name in SHOWN if name in report)


class _Bar(Progress):
    """The bar on one line, the latest losses on the line below it (they do not fit beside it)."""

    losses = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.losses:
            yield Text(f"  {self.losses}")


class TrainProgress:
    """`start(first, total)`, then `update(step, report)` after every step, `stop()`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.bar: _Bar | None = None
        self.job: Any = None
        self.every = 1
        self.total = 0

    def start(self, first: int, total: int) -> None:
        self.total = total
        self.started = time.perf_counter()
        self.first = first
        if self.console.is_terminal:
            self.bar = _Bar(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.job = self.bar.add_task("train", total=total, completed=first, rate="")
        else:
            self.every = max(1, (total - first) // 10)

    def update(self, step: int, report: dict[str, float]) -> None:
        done = step - self.first
        per_step = (time.perf_counter() - self.started) / max(done, 1)
        if self.bar is not None:
            self.bar.losses = _losses(report)
            self.bar.update(self.job, completed=step, rate=f"{per_step:.2f} s/step")
        elif done % self.every == 0 or step == self.total:
            self.console.file.write(f"step {step}/{self.total}  {_losses(report)}  ({per_step:.2f} s/step)\n")
            self.console.file.flush()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


__all__ = ["TrainProgress"]
