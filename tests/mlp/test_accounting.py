"""mlp.accounting against what PyTorch actually does: FlopCounterMode, saved-tensor hooks, optimiser state."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mlp

TEST_SEED = 0  # any fixed value: tests compare against references, not recorded numbers
RANDOM_CONFIGS = 40  # "a few dozen": enough to hit depth 0, no bias, flatten, both losses
CONFIG_SEED = 20240521
MAX_WIDTH = 24  # small layers keep each config to a few milliseconds
MAX_BATCH = 17  # odd sizes on purpose
MEMORY_BATCH = 6
MEMORY_IN, MEMORY_HIDDEN, MEMORY_OUT = 5, (7, 6), 3
FASHION_BATCH = 4


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(TEST_SEED)  # every test starts from the same RNG state, whatever ran before


@dataclass(frozen=True)
class Config:
    in_shape: tuple[int, ...]  # excludes the batch dimension; (1, h, w) means a Flatten first
    hidden: tuple[int, ...]
    out_features: int
    batch: int
    bias: bool
    loss: mlp.Loss
    activation: str

    @property
    def flatten(self) -> bool:
        return len(self.in_shape) > 1

    @property
    def in_features(self) -> int:
        return int(torch.Size(self.in_shape).numel())

    def __str__(self) -> str:  # the pytest id: in1x4x2-h18.17-o4-b3-nobias-mse-gelu
        hidden = ".".join(map(str, self.hidden)) or "none"
        shape = "x".join(map(str, self.in_shape))
        return (f"in{shape}-h{hidden}-o{self.out_features}-b{self.batch}-{'bias' if self.bias else 'nobias'}"
                f"-{self.loss.value}-{self.activation}")

    def model(self) -> mlp.MLP:
        return mlp.MLP(self.in_features, self.hidden, self.out_features, activation=self.activation,
                       bias=self.bias, flatten=self.flatten)


def _random_configs() -> list[Config]:
    rng = random.Random(CONFIG_SEED)
    configs = []
    for _ in range(RANDOM_CONFIGS):
        if rng.random() < 0.3:
            in_shape: tuple[int, ...] = (1, rng.randint(1, 6), rng.randint(1, 6))
        else:
            in_shape = (rng.randint(1, MAX_WIDTH),)
        configs.append(Config(
            in_shape=in_shape,
            hidden=tuple(rng.randint(1, MAX_WIDTH) for _ in range(rng.randint(0, 3))),
            out_features=rng.randint(1, 10),
            batch=rng.randint(1, MAX_BATCH),
            bias=rng.random() < 0.5,
            loss=rng.choice(list(mlp.Loss)),
            activation=rng.choice(list(mlp.ACTIVATIONS)),
        ))
    return configs


CONFIGS = _random_configs()


def _data(config: Config, input_requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(config.batch, *config.in_shape, requires_grad=input_requires_grad)
    return x, _targets(config.loss, config.batch, config.out_features)


def _targets(loss: mlp.Loss | str, batch: int, out_features: int) -> torch.Tensor:
    if mlp.parse_enum(mlp.Loss, loss, "loss") is mlp.Loss.MSE:
        return torch.randn(batch, out_features)
    return torch.randint(0, out_features, (batch,))


def _counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_random_configs_cover_the_edges() -> None:
    assert any(not c.hidden for c in CONFIGS)
    assert any(c.flatten for c in CONFIGS) and any(not c.flatten for c in CONFIGS)
    assert any(c.bias for c in CONFIGS) and any(not c.bias for c in CONFIGS)
    assert {c.loss for c in CONFIGS} == set(mlp.Loss)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_matmul_flops_match_flop_counter(config: Config) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss)
    x, y = _data(config)
    analytic = mlp.flops(model, config.batch, loss=config.loss)

    forward = _counted_flops(lambda: step.forward(x))
    step_total = _counted_flops(lambda: step.loss_backward(step.forward(x), y))

    assert analytic.forward_matmul == forward
    assert analytic.step_matmul == step_total
    assert mlp.inference_flops(model, config.batch) == _counted_flops(lambda: step.infer(x))


@pytest.mark.parametrize("config", CONFIGS[:10], ids=str)
def test_matmul_flops_with_input_gradient(config: Config) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss)
    x, y = _data(config, input_requires_grad=True)
    analytic = mlp.flops(model, config.batch, loss=config.loss, input_requires_grad=True)
    assert analytic.step_matmul == _counted_flops(lambda: step.loss_backward(step.forward(x), y))
    assert x.grad is not None


def test_backward_skips_first_input_gradient() -> None:
    """Backward is 2x forward minus the first layer's input-gradient matmul when the data needs no grad."""
    batch, sizes = 8, (10, 20, 30, 4)
    model = mlp.MLP(sizes[0], sizes[1:-1], sizes[-1])
    step = mlp.TrainStep(model)
    x, y = torch.randn(batch, sizes[0]), torch.randn(batch, sizes[-1])
    counted = _counted_flops(lambda: step.loss_backward(step.forward(x), y))
    forward = sum(2 * batch * a * b for a, b in zip(sizes, sizes[1:]))
    assert counted == 3 * forward - 2 * batch * sizes[0] * sizes[1]
    assert mlp.flops(model, batch).step_matmul == counted


# --------------------------------------------------------------------------- saved activations


def _saved_activation_bytes(step: mlp.TrainStep, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes autograd saves during forward + loss, by distinct storage, minus parameters, input and target."""
    excluded = {t.untyped_storage().data_ptr() for t in (x, y, *step.model.parameters())}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step.loss_backward(step.forward(x), y)  # pack runs while forward and loss build the graph
    return sum(saved.values())


@pytest.mark.parametrize("loss", list(mlp.Loss), ids=lambda v: v.value)
@pytest.mark.parametrize("precision", [mlp.Precision.FP32, mlp.Precision.BF16], ids=lambda v: v.value)
@pytest.mark.parametrize("activation", list(mlp.ACTIVATIONS))
def test_saved_activations_match_autograd(activation: str, precision: mlp.Precision, loss: mlp.Loss) -> None:
    model = mlp.MLP(MEMORY_IN, MEMORY_HIDDEN, MEMORY_OUT, activation=activation)
    step = mlp.TrainStep(model, loss=loss, precision=precision)
    x, y = torch.randn(MEMORY_BATCH, MEMORY_IN), _targets(loss, MEMORY_BATCH, MEMORY_OUT)
    analytic = mlp.memory(model, MEMORY_BATCH, (MEMORY_IN,), loss=loss, precision=precision)
    assert analytic.saved_activations_bytes == _saved_activation_bytes(step, x, y)


@pytest.mark.parametrize("loss", list(mlp.Loss), ids=lambda v: v.value)
@pytest.mark.parametrize("precision", [mlp.Precision.FP32, mlp.Precision.BF16], ids=lambda v: v.value)
@pytest.mark.parametrize("relu_on_logits", [False, True], ids=["logits", "relu_on_logits"])
def test_saved_activations_fashion_mnist(relu_on_logits: bool, precision: mlp.Precision, loss: mlp.Loss) -> None:
    model = mlp.fashion_mnist_mlp(relu_on_logits=relu_on_logits)
    step = mlp.TrainStep(model, loss=loss, precision=precision)
    x = torch.rand(FASHION_BATCH, *mlp.FASHION_MNIST_IMAGE)
    y = _targets(loss, FASHION_BATCH, mlp.FASHION_MNIST_CLASSES)
    analytic = mlp.memory(model, FASHION_BATCH, mlp.FASHION_MNIST_IMAGE, loss=loss, precision=precision)
    assert analytic.saved_activations_bytes == _saved_activation_bytes(step, x, y)


@pytest.mark.parametrize("precision", [mlp.Precision.FP32, mlp.Precision.BF16], ids=lambda v: v.value)
@pytest.mark.parametrize("config", CONFIGS[:12], ids=str)
def test_saved_activations_random_shapes(config: Config, precision: mlp.Precision) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss, precision=precision)
    x, y = _data(config)
    analytic = mlp.memory(model, config.batch, config.in_shape, loss=config.loss, precision=precision)
    assert analytic.saved_activations_bytes == _saved_activation_bytes(step, x, y)


def test_cast_weights_are_counted_under_autocast() -> None:
    model = mlp.MLP(MEMORY_IN, MEMORY_HIDDEN, MEMORY_OUT)
    fp32 = mlp.memory(model, MEMORY_BATCH, (MEMORY_IN,), precision="fp32")
    bf16 = mlp.memory(model, MEMORY_BATCH, (MEMORY_IN,), precision="bf16")
    assert fp32.cast_weights_bytes == 0
    later_weights = sum(m.weight.numel() for m in model.linears[1:])  # the first layer's W is not saved
    assert bf16.cast_weights_bytes == later_weights * torch.finfo(torch.bfloat16).bits // 8


# --------------------------------------------------------------------------- parameters, gradients, data, optimiser


@pytest.mark.parametrize("loss", list(mlp.Loss), ids=lambda v: v.value)
def test_parameter_gradient_and_data_bytes(loss: mlp.Loss) -> None:
    model = mlp.MLP(MEMORY_IN, MEMORY_HIDDEN, MEMORY_OUT)
    step = mlp.TrainStep(model, loss=loss)
    x, y = torch.randn(MEMORY_BATCH, MEMORY_IN), _targets(loss, MEMORY_BATCH, MEMORY_OUT)
    step.loss_backward(step.forward(x), y)
    analytic = mlp.memory(model, MEMORY_BATCH, (MEMORY_IN,), loss=loss)
    assert analytic.parameters_bytes == sum(p.nbytes for p in model.parameters())
    assert analytic.gradients_bytes == sum(p.grad.nbytes for p in model.parameters())
    assert analytic.data_bytes == x.nbytes + y.nbytes


@pytest.mark.parametrize("impl", [None, "foreach", "for_loop"])
@pytest.mark.parametrize("optimizer", list(mlp.Optimizer), ids=lambda v: v.value)
def test_optimizer_state_bytes_match_optimizer_state(optimizer: mlp.Optimizer, impl: str | None) -> None:
    model = mlp.MLP(MEMORY_IN, MEMORY_HIDDEN, MEMORY_OUT)
    torch_optimizer = mlp.make_optimizer(optimizer, model.parameters(), "cpu", impl=impl)
    x, y = torch.randn(MEMORY_BATCH, MEMORY_IN), torch.randn(MEMORY_BATCH, MEMORY_OUT)
    nn.functional.mse_loss(model(x), y).backward()
    torch_optimizer.step()
    actual = sum(value.nbytes for state in torch_optimizer.state.values() for value in state.values()
                 if isinstance(value, torch.Tensor))
    assert mlp.optimizer_state_bytes(model, optimizer) == actual
    assert mlp.memory(model, MEMORY_BATCH, (MEMORY_IN,), optimizer=optimizer).optimizer_state_bytes == actual


def test_bad_batch_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"batch.*>= 1.*got 0"):
        mlp.flops(mlp.uniform(4, 1), 0)
