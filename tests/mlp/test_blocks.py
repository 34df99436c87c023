"""mlp.blocks and their accounting (mlp.block_ops) against PyTorch: FlopCounterMode, the tensors autograd saves,
the GEMMs a step dispatches, and hand-written reference modules built from torch's own layers."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import mlp
from mlp.traffic import Gemm

CONFIG_SEED = 20261202
RANDOM_CONFIGS = 30  # issue 38: "their FLOPs equal FlopCounterMode on 30 random configurations"
MAX_WIDTH, MAX_BATCH = 12, 9  # tiny on purpose: each config runs in milliseconds
KINDS = [kind.value for kind in mlp.BlockKind]
MATMUL_OPS = ("aten.mm.default", "aten.addmm.default")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


@dataclass(frozen=True)
class Config:
    kind: str
    width: int
    depth: int
    in_features: int
    out_features: int
    size: int  # expansion (ffn, residual) or hidden (swiglu)
    activation: str
    norm: str
    bias: bool
    dropout: float
    batch: int
    loss: str

    def __str__(self) -> str:
        return (f"{self.kind}-w{self.width}-d{self.depth}-i{self.in_features}-o{self.out_features}-s{self.size}-"
                f"{self.activation}-{self.norm}-{'bias' if self.bias else 'nobias'}-p{self.dropout:g}-"
                f"b{self.batch}-{self.loss}")

    def model(self) -> mlp.BlockNet:
        size = {"expansion": self.size} if self.kind != "swiglu" else {"hidden": self.size}
        return mlp.block_net(self.kind, self.width, self.depth, self.in_features, self.out_features,
                             activation=self.activation, norm=self.norm, bias=self.bias, dropout=self.dropout,
                             **size)


def _random_configs() -> list[Config]:
    rng = random.Random(CONFIG_SEED)
    out = []
    for i in range(RANDOM_CONFIGS):
        kind = KINDS[i % len(KINDS)]
        width = rng.randint(2, MAX_WIDTH)
        out.append(Config(
            kind=kind, width=width, depth=rng.randint(1, 3),
            in_features=rng.choice([width, rng.randint(1, MAX_WIDTH)]),
            out_features=rng.choice([width, rng.randint(1, 6)]),
            size=rng.randint(1, 4) if kind != "swiglu" else rng.randint(1, 2 * MAX_WIDTH),
            activation=rng.choice(list(mlp.ACTIVATIONS)),
            norm=rng.choice([n.value for n in mlp.Norm]) if kind == "residual" else "none",
            bias=rng.random() < 0.5, dropout=rng.choice([0.0, 0.0, 0.25]),
            batch=rng.randint(1, MAX_BATCH), loss=rng.choice([loss.value for loss in mlp.Loss]),
        ))
    return out


CONFIGS = _random_configs()


def _data(c: Config, input_requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(c.batch, c.in_features, requires_grad=input_requires_grad)
    y = torch.randn(c.batch, c.out_features) if c.loss == "mse" else torch.randint(0, c.out_features, (c.batch,))
    return x, y


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_the_random_configs_cover_every_option() -> None:
    assert {c.kind for c in CONFIGS} == set(KINDS)
    assert {c.norm for c in CONFIGS if c.kind == "residual"} == {n.value for n in mlp.Norm}
    assert {c.bias for c in CONFIGS} == {True, False} and {c.dropout > 0 for c in CONFIGS} == {True, False}
    assert any(c.in_features != c.width for c in CONFIGS) and any(c.in_features == c.width for c in CONFIGS)
    assert any(c.out_features != c.width for c in CONFIGS) and {c.loss for c in CONFIGS} == {"mse", "cross_entropy"}


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_matmul_flops_match_flop_counter(config: Config) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss)
    x, y = _data(config)
    analytic = mlp.flops(model, config.batch, loss=config.loss)
    with FlopCounterMode(display=False) as whole:  # the inner counter sees the forward only
        with FlopCounterMode(display=False) as forward:
            out = step.forward(x)
        step.loss_backward(out, y)
    assert analytic.forward_matmul == forward.get_total_flops()
    assert analytic.step_matmul == whole.get_total_flops()
    assert mlp.inference_flops(model, config.batch) == _counted(lambda: step.infer(x))


@pytest.mark.parametrize("config", CONFIGS[:4], ids=str)
def test_matmul_flops_with_an_input_gradient(config: Config) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss)
    x, y = _data(config, input_requires_grad=True)
    analytic = mlp.flops(model, config.batch, loss=config.loss, input_requires_grad=True)
    assert analytic.step_matmul == _counted(lambda: step.loss_backward(step.forward(x), y))


# --------------------------------------------------------------------------- saved activations


def _saved_bytes(step: mlp.TrainStep, x: torch.Tensor, y: torch.Tensor) -> tuple[int, list]:
    """Distinct storages autograd saves in forward + loss, less parameters, input and target; and the unpacks."""
    excluded = {t.untyped_storage().data_ptr() for t in (x, y, *step.model.parameters())}
    saved: dict[int, int] = {}
    reads: list[int] = []
    packs: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        packs.append(tensor.numel() * tensor.element_size())
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        reads.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        step.loss_backward(step.forward(x), y)
    assert sorted(packs) == sorted(reads)  # each saved tensor read back once (test_cuda_rules counts packs)
    return sum(saved.values()), reads


# bf16 on every config (autocast's casts are where the rules are subtle), fp32 on every other one
SAVED_CASES = [(c, "bf16") for c in CONFIGS] + [(c, "fp32") for c in CONFIGS[::2]]


@pytest.mark.parametrize("config, precision", SAVED_CASES, ids=[f"{c}-{p}" for c, p in SAVED_CASES])
def test_saved_activations_and_their_reads_match_autograd(config: Config, precision: str) -> None:
    """What autograd packs (by distinct storage) is ``mlp.memory``'s; what backward unpacks is ``mlp.traffic``'s."""
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss, precision=precision)
    x, y = _data(config)
    memory = mlp.memory(model, config.batch, (config.in_features,), config.loss, precision=precision)
    traffic = mlp.traffic(model, config.batch, (config.in_features,), config.loss, precision=precision)
    saved, reads = _saved_bytes(step, x, y)
    assert memory.saved_activations_bytes == saved
    assert traffic.backward.saved_bytes == sum(reads)


def test_cpu_dropout_saves_a_noise_tensor_of_the_input_dtype() -> None:
    """The mask's bytes as autograd really stores them on the CPU (CUDA's native_dropout saves a bool mask)."""
    x = torch.randn(5, 7, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        nn.functional.dropout(x, 0.5, training=True)
    assert [(t.shape, t.dtype) for t in kept] == [(x.shape, torch.float32)]
    _, mask = torch.ops.aten.native_dropout(torch.empty(4, device="meta"), 0.5, True)  # the CUDA kernel's contract
    assert mask.dtype == torch.bool


# --------------------------------------------------------------------------- GEMMs, parameters, optimiser


class _Matmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in MATMUL_OPS:
            a, b = (args[1], args[2]) if str(func) == "aten.addmm.default" else (args[0], args[1])
            transposed = lambda t: t.dim() == 2 and t.stride(0) == 1 and t.stride(1) != 1  # noqa: E731
            self.seen.append(Gemm(a.shape[0], a.shape[1], b.shape[1], transposed(a), transposed(b),
                                  str(func) == "aten.addmm.default"))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("config", CONFIGS[:6], ids=str)
def test_the_gemms_are_the_products_a_step_dispatches(config: Config) -> None:
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss)
    x, y = _data(config)
    step.step(x, y)
    with _Matmuls() as recorder:
        step.loss_backward(step.forward(x), y)
    assert sorted(recorder.seen) == sorted(mlp.gemms(model, config.batch))


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adamw"])
def test_parameters_gradients_data_and_optimizer_state(optimizer: str) -> None:
    config = next(c for c in CONFIGS if c.kind == "residual" and c.norm == "layernorm")
    model = config.model()
    step = mlp.TrainStep(model, loss=config.loss, optimizer=optimizer)
    x, y = _data(config)
    step.loss_backward(step.forward(x), y)
    grads = sum(p.grad.nbytes for p in model.parameters())
    step.optimizer.step()
    analytic = mlp.memory(model, config.batch, (config.in_features,), config.loss, optimizer)
    assert analytic.parameters_bytes == sum(p.nbytes for p in model.parameters())
    assert analytic.gradients_bytes == grads
    assert analytic.data_bytes == x.nbytes + y.nbytes
    assert analytic.optimizer_state_bytes == sum(t.nbytes for t in mlp.optimizer_state_tensors(step.optimizer))


# --------------------------------------------------------------------------- against hand-written references


class _RefFFN(nn.Module):  # nanoGPT's MLP
    def __init__(self, d, h, act, bias, p):
        super().__init__()
        self.fc_in, self.act, self.fc_out = nn.Linear(d, h, bias=bias), act, nn.Linear(h, d, bias=bias)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return self.drop(self.fc_out(self.act(self.fc_in(x))))


class _RefSwiGLU(nn.Module):  # LLaMA's FeedForward
    def __init__(self, d, h, bias, p):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(d, h, bias=bias), nn.Linear(h, d, bias=bias), nn.Linear(d, h, bias=bias)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return self.drop(self.w2(nn.functional.silu(self.w1(x)) * self.w3(x)))


class _RefResidual(nn.Module):
    def __init__(self, d, h, act, norm, bias, p):
        super().__init__()
        self.norm = {"layernorm": lambda: nn.LayerNorm(d, bias=bias), "rmsnorm": lambda: nn.RMSNorm(d),
                     "none": nn.Identity}[norm]()
        self.ffn = _RefFFN(d, h, act, bias, p)

    def forward(self, x):
        return x + self.ffn(self.norm(x))


def _reference(c: Config) -> nn.Module:
    d, act = c.width, mlp.make_activation(c.activation)
    layers = [nn.Linear(c.in_features, d, bias=c.bias)] if c.in_features != d else []
    for _ in range(c.depth):
        if c.kind == "ffn":
            layers.append(_RefFFN(d, c.size * d, act, c.bias, c.dropout))
        elif c.kind == "swiglu":
            layers.append(_RefSwiGLU(d, c.size, c.bias, c.dropout))
        else:
            layers.append(_RefResidual(d, c.size * d, act, c.norm, c.bias, c.dropout))
    if c.kind == "residual" and c.norm != "none":
        layers.append(nn.LayerNorm(d, bias=c.bias) if c.norm == "layernorm" else nn.RMSNorm(d))
    if c.out_features != d:
        layers.append(nn.Linear(d, c.out_features, bias=c.bias))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("config", CONFIGS[::2], ids=str)
def test_the_nets_equal_hand_written_references(config: Config) -> None:
    model, ref = config.model(), _reference(config)
    ours, theirs = list(model.parameters()), list(ref.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]  # the same layers in the same order
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.copy_(a)
    x = torch.randn(config.batch, config.in_features)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)  # the same dropout draws, in the same order
    assert torch.equal(out, ref(x))
    assert mlp.count_parameters(model) == mlp.count_parameters(ref)


def test_llama_hidden_is_llamas_rule() -> None:
    assert mlp.llama_hidden(4096) == 11008  # LLaMA-7B's FFN
    assert mlp.llama_hidden(5120) == 13824  # LLaMA-13B's
    assert mlp.block_net("swiglu", 512, 1).hidden == mlp.llama_hidden(512) == 1536


# --------------------------------------------------------------------------- the inference phase in eval mode


@pytest.mark.parametrize("kind", KINDS)
def test_inference_is_the_eval_mode_forward_and_training_is_restored(kind: str) -> None:
    """``TrainStep.infer`` of a net with dropout equals torch's own ``model.eval()`` forward (no mask drawn), and
    leaves every module in train mode for the next training step."""
    model = mlp.block_net(kind, 8, 2, dropout=0.5)
    step = mlp.TrainStep(model)
    x = torch.randn(4, 8)
    reference = model.eval()(x).detach()
    model.train()
    assert torch.equal(step.infer(x), reference) and torch.equal(step.infer(x), reference)
    assert all(m.training for m in model.modules())
    with torch.no_grad():
        train_out = step.forward(x)
    assert not torch.equal(train_out, reference)  # the training forward still drops


@pytest.mark.parametrize("kind", KINDS)
def test_the_inference_accounting_of_a_dropout_net_is_that_of_the_same_net_without(kind: str) -> None:
    """In eval mode nn.Dropout is the identity: the inference phase's bytes and live set are those of p = 0,
    while the training forward still writes its mask."""
    with_dropout, without = (mlp.block_net(kind, 8, 2, dropout=p) for p in (0.25, 0.0))
    traffic = [mlp.traffic(m, 4, (8,)) for m in (with_dropout, without)]
    memory = [mlp.memory(m, 4, (8,)) for m in (with_dropout, without)]
    assert traffic[0].inference == traffic[1].inference == traffic[1].forward
    assert traffic[0].forward.total_bytes > traffic[1].forward.total_bytes
    assert memory[0].widest_pair_bytes == memory[1].widest_pair_bytes
