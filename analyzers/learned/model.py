"""The network of the learned segmenter: a small U-Net on canonical-scale fields.

Input ``(B, 1, H, W)`` float32, a field rescaled so nuclei are ~``CANONICAL_DIAMETER_PX``
across and normalised by percentiles (H, W multiples of 8). Output ``(B, 2, H, W)``: channel 0
the foreground logit, channel 1 the distance to the nucleus edge in canonical radii (0 at the
edge and outside, ~1 at a nucleus' centre), which drops at the seam between touching nuclei
so their seeds separate.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NucleusUNet"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class NucleusUNet(nn.Module):
    """U-Net with three down-samplings; ``width`` channels at full resolution.

    Args:
        width: channels of the first level (doubled at each of the three levels below).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.down = nn.ModuleList([_block(1, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.bottom = _block(w[2], w[3])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in (2, 1, 0)]
        )
        self.merge = nn.ModuleList([_block(2 * w[i], w[i]) for i in (2, 1, 0)])
        self.head = nn.Conv2d(w[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → ``(B, 2, H, W)`` (foreground logit, edge distance)."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], 1))
        out: torch.Tensor = self.head(x)
        return out
