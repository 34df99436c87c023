"""The phases of a training step: the one declaration of the ``phase`` column's values.

No imports at all: the reporting side (which never imports torch) and the gate's
instruments (loaded by path inside a worker) read it as well as the engine.
"""

from __future__ import annotations

import enum


class Phase(str, enum.Enum):
    STEP = "step"  # forward + loss + backward + optimiser, uninstrumented
    FORWARD = "forward"
    BACKWARD = "backward"  # loss + backward
    OPTIMIZER = "optimizer"  # optimiser step + zero_grad(set_to_none=True)
    INFERENCE = "inference"  # forward under torch.inference_mode


TRAINING_PHASES = (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER)  # timed apart; they add up to the step
TRAINING_PHASE_NAMES = tuple(p.value for p in TRAINING_PHASES)
PHASE_NAMES = tuple(p.value for p in Phase)
