"""What the solver may answer in each scenario: task-incremental learning masks the other tasks' classes, in
training and at test time; domain- and class-incremental learning read every output (notebook 00)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from grlib.continual.data import TaskStream, to_float


def active_logits(logits: Tensor, classes: tuple[int, ...] | None) -> Tensor:
    """Task-incremental heads: logits of classes outside `classes` set to -inf (None keeps all)."""
    if classes is None:
        return logits
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[list(classes)] = True
    return logits.masked_fill(~mask, float("-inf"))


def scenario_logits(logits: Tensor, y: Tensor, stream: TaskStream) -> Tensor:
    """Training logits: in task-IL each sample competes only among its own task's classes; else all outputs."""
    if stream.scenario != "task":
        return logits
    masks = torch.zeros(len(stream), stream.n_classes, dtype=torch.bool, device=logits.device)
    owner = torch.zeros(stream.n_classes, dtype=torch.long, device=logits.device)
    for k, task in enumerate(stream):
        masks[k, list(task.classes)] = True
        owner[list(task.classes)] = k
    return logits.masked_fill(~masks[owner[y]], float("-inf"))


@torch.no_grad()
def predict(solver: nn.Module, x: Tensor, classes: tuple[int, ...] | None = None, chunk: int = 2000) -> Tensor:
    """Predicted labels for uint8 images, in chunks."""
    was_training = solver.training
    solver.eval()
    preds = [active_logits(solver(to_float(x[i:i + chunk])), classes).argmax(1) for i in range(0, len(x), chunk)]
    solver.train(was_training)
    return torch.cat(preds)
