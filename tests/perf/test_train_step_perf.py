"""pytest-benchmark cases: the classic networks' training step and each of its phases.

One group per network and device, one benchmark per phase inside it, so
``pytest-benchmark compare`` lists the phases of a case side by side and a saved
run compares row by row with the next.
"""

from __future__ import annotations

import pytest
import torch

from bench.case.cases import Case

CLASSIC_BATCH = 64  # the classic notebooks' batch size
NETWORKS = ("teaching", "fashion_mnist")
CUDA_SKIP = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")


def _case_params() -> list:
    params = []
    for device in ("cpu", "cuda"):
        for network in NETWORKS:
            marks = [pytest.mark.benchmark(group=f"{network} b{CLASSIC_BATCH} {device}")]
            marks += [pytest.mark.cuda, CUDA_SKIP] if device == "cuda" else []
            params.append(pytest.param(Case(network=network, batch=CLASSIC_BATCH, device=device),
                                       id=f"{network}-{device}", marks=marks))
    return params


CASES = pytest.mark.parametrize("train_step", _case_params(), indirect=True)


def _no_args() -> tuple:
    return ()


@CASES
def test_step(pedantic, train_step):
    step, x, y = train_step
    pedantic(lambda: step.step(x, y), _no_args, step.device)


@CASES
def test_forward(pedantic, train_step):
    step, x, y = train_step
    pedantic(lambda: step.forward(x), _no_args, step.device)


@CASES
def test_loss_backward(pedantic, train_step):
    step, x, y = train_step

    def setup() -> tuple:  # a fresh graph, gradients reset so nothing accumulates
        step.optimizer.zero_grad(set_to_none=True)
        return (step.forward(x),)

    pedantic(lambda out: step.loss_backward(out, y), setup, step.device)


@CASES
def test_optimizer(pedantic, train_step):
    step, x, y = train_step

    def setup() -> tuple:  # fresh gradients for the update to consume
        step.loss_backward(step.forward(x), y)
        return ()

    pedantic(step.optimizer_step, setup, step.device)


@CASES
def test_inference(pedantic, train_step):
    step, x, y = train_step
    pedantic(lambda: step.infer(x), _no_args, step.device)
