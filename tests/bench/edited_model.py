"""A user's model file edited between two runs (issue 47): a nested ``nn.Sequential`` whose hidden width the edit
changes, measured from the user's own folder with a relative ``--model models/edited.py:make``.

One hidden layer: a training step's matmul FLOPs are ``2 * batch * hidden * (2 * in + 3 * out)`` (forward
``in*h + h*out``; backward both weight gradients and the hidden input's gradient, not the data's), linear in the
hidden width, so hidden 250 -> 300 is exactly +20.0% work per step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MODEL = "models/edited.py:make"
SOURCE = """from torch import nn

HIDDEN = {hidden}


def make(in_features, out_features, hidden=HIDDEN):
    # the first child is itself a Sequential: mlp.flops refuses this ("activation Sequential(...) before the first
    # Linear is not supported"); counted FLOPs do not
    return nn.Sequential(nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()), nn.Linear(hidden, out_features))
"""


def write_model(project: Path, hidden: int) -> Path:
    """``project/models/edited.py`` with this hidden width (the edit under test); returns the file."""
    path = Path(project) / "models" / "edited.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SOURCE.format(hidden=hidden))
    return path


def torch_step_flops(in_features: int, hidden: int, out_features: int, batch: int) -> int:
    """The reference: FlopCounterMode over the same network written with torch alone, forward, MSE and backward."""
    model = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
    x, y = torch.randn(batch, in_features), torch.randn(batch, out_features)
    with FlopCounterMode(display=False) as counter:
        nn.functional.mse_loss(model(x), y).backward()
    return int(counter.get_total_flops())


def measure_run(project: Path, out: Path, monkeypatch, batch: int = 4, in_features: int = 16, out_features: int = 8,
                **fields) -> Path:
    """One real run of the model as the file is now, from ``project`` (the user's working folder); no limits."""
    from bench import api

    monkeypatch.chdir(project)
    api.measure(MODEL, batch=batch, in_features=in_features, out_features=out_features, threads=1, limits=False,
                repeats=2, warmup_s=0.0, out=out, **fields)
    return out
