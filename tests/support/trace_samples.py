"""Small traces shared by the trace and chart tests."""

from __future__ import annotations

import math

import torch

from lib_latentfix.trace import Trace, TraceData


def latent(b: int, h: int, w: int, seed: int, dtype=torch.float32, c: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g) * 2.0 + 0.5).to(dtype)


def sample_data() -> TraceData:
    trace = Trace()
    for k in range(3):
        x = latent(2, 4, 4, k)
        x[1, 3, 0, 0] = math.nan if k == 2 else x[1, 3, 0, 0]
        trace.record(torch.tensor([900.0 - 300 * k, 890.0 - 300 * k]), x, x * 0.5, label=f"pass {k // 2}")
    return trace.finish()
