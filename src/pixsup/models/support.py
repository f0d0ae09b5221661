"""SupportNet: the network whose CAMs and features supervise MainNet (never trained by its losses)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .inference import inference_model


class SupportNet(nn.Module):
    """A gradient-free copy of a CAM network, always run in eval mode.

    ``kind="frozen"``: the trained baseline, fixed for the whole run. It runs
    as :func:`inference_model` does (BatchNorm folded into the convolutions,
    channels_last), the same CAMs up to float rounding at a lower cost: its
    forward passes at every MAM scale are most of what `full` adds to a
    training step (docs/performance.md).
    ``kind="ema"``: an exponential moving average of MainNet, updated by
    :meth:`update` after every optimiser step.
    """

    def __init__(self, net: nn.Module, kind: str = "frozen", momentum: float = 0.996) -> None:
        super().__init__()
        if kind not in ("frozen", "ema"):
            raise ValueError(f"unknown SupportNet kind '{kind}' (frozen | ema)")
        self.net = inference_model(net) if kind == "frozen" else copy.deepcopy(net)
        self.kind = kind
        self.momentum = momentum
        for param in self.net.parameters():
            param.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> SupportNet:
        # BatchNorm statistics stay fixed: the support signal must not depend on the batch.
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: Tensor, with_proj: bool = True) -> dict[str, Tensor]:
        if self.kind == "frozen":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x, with_proj=with_proj)

    @torch.no_grad()
    def update(self, main: nn.Module) -> None:
        """EMA step ``s <- m * s + (1 - m) * main`` on parameters; buffers are copied."""
        if self.kind != "ema":
            return
        for support_p, main_p in zip(self.net.parameters(), main.parameters()):
            support_p.mul_(self.momentum).add_(main_p.detach(), alpha=1.0 - self.momentum)
        for support_b, main_b in zip(self.net.buffers(), main.buffers()):
            support_b.copy_(main_b)
