"""A frozen network inside a training LightningModule (a distillation teacher): no parameter takes a gradient, its
forward runs under `torch.no_grad()`, and it stays in eval mode whatever `train()` it is given (Lightning puts the
whole LightningModule in train mode at every epoch), unless `stochastic`: then it follows the mode it is given, as
the official distillation teachers did (DropPath active, batch norm on batch statistics), for parity runs.

    teacher = SomeTeacher(network, stochastic=False)   # a subclass: its forward() runs under `no_grad`
"""
from __future__ import annotations

from torch import nn


class FrozenNetwork(nn.Module):
    """`self.model`, frozen (module docstring); subclasses run it under `torch.no_grad()` in `forward`."""

    def __init__(self, model: nn.Module, stochastic: bool = False) -> None:
        super().__init__()
        self.model = model
        self.model.requires_grad_(False)
        self.stochastic = stochastic
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenNetwork":
        """Eval mode whatever `mode` is, unless the network is `stochastic` (the official train-mode teacher)."""
        return super().train(mode and self.stochastic)


__all__ = ["FrozenNetwork"]
