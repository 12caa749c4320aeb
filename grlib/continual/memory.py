"""Memory buffers of real samples for experience replay (notebook 02): class-balanced and reservoir."""
from __future__ import annotations

import torch
from torch import Tensor


class Buffer:
    """A fixed budget of stored samples: uint8 images and int64 labels, on the device of the data."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"a replay buffer needs room for at least one sample; got capacity {capacity}")
        self.capacity = capacity
        self.x: Tensor | None = None
        self.y: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity})"

    @property
    def nbytes(self) -> int:
        """Bytes held: images (1 byte a pixel) plus labels (8 bytes each)."""
        return 0 if self.x is None else self.x.numel() * self.x.element_size() + self.y.numel() * self.y.element_size()

    def add(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        """Offer one task's training samples to the buffer, which keeps what its rule allows."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n stored samples drawn uniformly with replacement."""
        idx = torch.randint(len(self), (n,), generator=generator, device=self.y.device)
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict:
        return {"x": self.x, "y": self.y, **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.y = state["x"], state["y"]

    def _extra_state(self) -> dict:
        return {}


class ClassBalancedBuffer(Buffer):
    """Equal slots for every class seen so far (capacity // n_seen each), shrinking as new classes arrive.

    Slots go to (task, class) groups, so when a class comes back in a later task (domain-IL) its slots are
    shared equally between the tasks that showed it."""

    def __init__(self, capacity: int, n_classes: int):
        super().__init__(capacity)
        if capacity < n_classes:
            raise ValueError(f"a class-balanced buffer of {capacity} samples cannot hold one sample of each of "
                             f"{n_classes} classes; use a capacity of at least {n_classes}")
        self.n_classes = n_classes
        self.group: Tensor | None = None  # task_index * n_classes + label, for every stored sample
        self.tasks_added = 0

    def add(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        new_group = y + self.n_classes * self.tasks_added
        if self.x is None:
            all_x, all_y, all_group = x, y, new_group
        else:
            all_x, all_y, all_group = torch.cat([self.x, x]), torch.cat([self.y, y]), torch.cat([self.group, new_group])
        groups = all_group.unique().tolist()
        quota, extra = divmod(self.capacity, len(groups))  # the first `extra` groups get one slot more
        keep = []
        for i, g in enumerate(groups):
            idx = (all_group == g).nonzero().squeeze(1)
            if g // self.n_classes == self.tasks_added:  # a new group: a random subset; an old one keeps a prefix
                idx = idx[torch.randperm(len(idx), generator=generator, device=generator.device)]
            keep.append(idx[: quota + (i < extra)])
        keep = torch.cat(keep)
        self.x, self.y, self.group = all_x[keep], all_y[keep], all_group[keep]
        self.tasks_added += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity}, n_classes={self.n_classes})"

    def _extra_state(self) -> dict:
        return {"group": self.group, "tasks_added": self.tasks_added}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.group, self.tasks_added = state["group"], state["tasks_added"]


class ReservoirBuffer(Buffer):
    """Reservoir sampling (Vitter 1985): after n samples offered, each one is stored with probability capacity / n."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.seen = 0

    def add(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        order = torch.randperm(len(y), generator=generator, device=generator.device)  # the order of the stream
        x, y = x[order], y[order]
        free = self.capacity - len(self)
        if free > 0:  # fill up first
            self.x = x[:free].clone() if self.x is None else torch.cat([self.x, x[:free]])
            self.y = y[:free].clone() if self.y is None else torch.cat([self.y, y[:free]])
            x, y = x[free:], y[free:]
            self.seen += min(free, len(order))
        # the sample numbered n (0-based) replaces slot j ~ U{0, ..., n} if j < capacity
        n = torch.arange(self.seen, self.seen + len(y), device=y.device)
        j = (torch.rand(len(y), generator=generator, device=generator.device) * (n + 1)).long()
        for src, slot in zip((j < self.capacity).nonzero().squeeze(1).tolist(), j[j < self.capacity].tolist()):
            self.x[slot], self.y[slot] = x[src], y[src]
        self.seen += len(y)

    def _extra_state(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.seen = state["seen"]
