"""The whole training step captured in one CUDA graph, as ``torch.cuda.graphs`` documents for a whole network.

The recipe (PyTorch's "CUDA Graphs" notes, whole-network capture):

* static input buffers: the step reads its batch from two tensors the graph owns; each call copies the
  new batch into them (the copy is part of the step, as in a real loop that feeds a graph);
* warm-up on a side stream before capture (``WARMUP_STEPS``: lazy initialisation, cuBLAS handles, the
  optimiser's state, a compiled function's compilation all happen outside the capture), then rewound
  (``rewind``), so that the graph trains from the same weights as the eager step: step for step the same;
* gradients set to None before capture, so backward allocates them in the graph's private pool; the
  step's own ``zero_grad(set_to_none=True)`` is captured too, and every replay writes them afresh;
* a capturable optimiser (``mlp.train.make_optimizer(capturable=True)``: Adam/AdamW keep ``step`` on the
  device; SGD needs no flag) and autocast without its cache (``TrainStep._autocast``).

A replay runs the captured kernels with no Python, no dispatch and no launch per kernel: what a
graph saves is the host's time. CUDA only; ``TrainStep`` refuses it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP_STEPS = 3  # as in PyTorch's example: enough for lazy init and the optimiser's state to exist


class CapturedStep:
    """``step(x, y) -> loss``: captured on the first call (after a side-stream warm-up), replayed after."""

    def __init__(self, step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer):
        self.step = step
        self.optimizer = optimizer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x = self.static_y = self.static_loss = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self.capture(x, y)
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.static_loss

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.static_x, self.static_y = x.clone(), y.clone()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        before = [p.detach().clone() for p in params]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        self.rewind(params, before)
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_loss = self.step(self.static_x, self.static_y)
        self.graph = graph

    @torch.no_grad()
    def rewind(self, params: list[torch.Tensor], before: list[torch.Tensor]) -> None:
        """Undo the warm-up's updates in place (the graph captures these addresses): the parameters as they were,
        the optimiser's state zeroed. A zero momentum buffer, zero Adam moments and a zero ``step`` update exactly
        as a fresh state does, so the first replay is the first training step, as in the eager step."""
        for p, old in zip(params, before):
            p.copy_(old)
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()

