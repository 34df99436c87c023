"""mlp.models against hand-built ``nn.Sequential`` networks made of PyTorch's own modules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mlp

TEST_SEED = 0  # any fixed value: tests compare against references, not recorded numbers
IN_FEATURES, HIDDEN, OUT_FEATURES, BATCH = 6, (9, 7), 3, 5
TEACHING_PARAMETERS = 50_561  # 3*256+256 + 256*128+128 + 128*128+128 + 128*1+1
FASHION_PARAMETERS = 669_706  # 784*512+512 + 512*512+512 + 512*10+10


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(TEST_SEED)  # every test starts from the same RNG state, whatever ran before


class ReferenceStep(nn.Module):
    """The classic binary step, written out: 1 where x > 0 else 0; no gradient flows through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).float()


class ReferenceStraightThroughStep(nn.Module):
    """Step forward, hard-tanh gradient (1 inside |x| < 1, else 0) backward, built from PyTorch ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = F.hardtanh(x)
        return (x > 0).float() + (window - window.detach())  # value: exactly the step


# name -> PyTorch's own module for that activation, independent of mlp's registry.
TORCH_MODULE: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "binary_step": ReferenceStep,
    "binary_step_ste": ReferenceStep,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
}


def _reference(sizes: tuple[int, ...], activation: Callable[[], nn.Module], bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(fan_in, fan_out, bias=bias), activation()]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=bias))
    return nn.Sequential(*layers)


def _copy_weights(model: nn.Module, reference: nn.Module) -> None:
    reference.load_state_dict(model.state_dict(), strict=True)  # strict: same layers, same shapes


def _forward_backward(net: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    out = net(x)  # (batch, in_features) -> (batch, out_features)
    if out.requires_grad:
        out.backward(grad_out)
    return out.detach(), x.grad


def _linear_grads(net: nn.Module) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    return [(m.weight.grad, m.bias.grad) for m in net if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("activation", list(mlp.ACTIVATIONS))
def test_mlp_matches_hand_built_sequential(activation: str) -> None:
    model = mlp.MLP(IN_FEATURES, HIDDEN, OUT_FEATURES, activation=activation)
    reference = _reference((IN_FEATURES, *HIDDEN, OUT_FEATURES), TORCH_MODULE[activation])
    _copy_weights(model, reference)
    x, grad_out = torch.randn(BATCH, IN_FEATURES), torch.randn(BATCH, OUT_FEATURES)

    out, x_grad = _forward_backward(model, x, grad_out)
    ref_out, ref_x_grad = _forward_backward(reference, x, grad_out)

    torch.testing.assert_close(out, ref_out)
    grads, ref_grads = _linear_grads(model), _linear_grads(reference)
    if activation.startswith("binary_step"):
        # The reference step passes no gradient: only the layer after the last step is comparable.
        grads, ref_grads = grads[-1:], ref_grads[-1:]
    else:
        torch.testing.assert_close(x_grad, ref_x_grad)
    for (w, b), (ref_w, ref_b) in zip(grads, ref_grads):
        torch.testing.assert_close(w, ref_w)
        torch.testing.assert_close(b, ref_b)


def test_binary_step_zero_backward_leaves_earlier_layers_exactly_zero() -> None:
    model = mlp.MLP(IN_FEATURES, HIDDEN, OUT_FEATURES, activation="binary_step")
    x = torch.randn(BATCH, IN_FEATURES, requires_grad=True)
    model(x).backward(torch.randn(BATCH, OUT_FEATURES))
    for weight_grad, bias_grad in _linear_grads(model)[:-1]:
        assert torch.equal(weight_grad, torch.zeros_like(weight_grad))
        assert torch.equal(bias_grad, torch.zeros_like(bias_grad))
    assert torch.equal(x.grad, torch.zeros_like(x))
    last_weight_grad, _ = _linear_grads(model)[-1]
    assert last_weight_grad.abs().sum() > 0


def test_binary_step_ste_matches_hard_tanh_straight_through() -> None:
    model = mlp.MLP(IN_FEATURES, HIDDEN, OUT_FEATURES, activation="binary_step_ste")
    reference = _reference((IN_FEATURES, *HIDDEN, OUT_FEATURES), ReferenceStraightThroughStep)
    _copy_weights(model, reference)
    x, grad_out = torch.randn(BATCH, IN_FEATURES), torch.randn(BATCH, OUT_FEATURES)
    out, x_grad = _forward_backward(model, x, grad_out)
    ref_out, ref_x_grad = _forward_backward(reference, x, grad_out)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(x_grad, ref_x_grad)
    for (w, b), (ref_w, ref_b) in zip(_linear_grads(model), _linear_grads(reference)):
        torch.testing.assert_close(w, ref_w)
        torch.testing.assert_close(b, ref_b)


def test_flatten_mlp_matches_reference_on_images() -> None:
    height, width = 4, 5
    model = mlp.MLP(height * width, (8,), OUT_FEATURES, flatten=True)
    reference = nn.Sequential(nn.Flatten(), *_reference((height * width, 8, OUT_FEATURES), nn.ReLU))
    _copy_weights(model, reference)
    x = torch.randn(BATCH, 1, height, width)  # (batch, 1, h, w) -> (batch, h*w)
    torch.testing.assert_close(model(x), reference(x))


def test_identity_activation_collapses_to_one_linear_map() -> None:
    """Without a nonlinearity, any depth of Linear layers is a single affine map W x + b."""
    model = mlp.MLP(IN_FEATURES, (9, 8, 7), OUT_FEATURES, activation="identity").double()
    weight = torch.eye(IN_FEATURES, dtype=torch.float64)
    bias = torch.zeros(IN_FEATURES, dtype=torch.float64)
    for linear in model.linears:  # y = W_k (... (W_1 x + b_1) ...) + b_k
        weight = linear.weight.detach() @ weight
        bias = linear.weight.detach() @ bias + linear.bias.detach()
    x = torch.randn(BATCH, IN_FEATURES, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.linear(x, weight, bias))


def test_relu_mlp_is_not_one_linear_map() -> None:
    """The contrast: every linear map has f(-x) == -f(x); a bias-free ReLU MLP does not."""
    model = mlp.MLP(IN_FEATURES, (16,), OUT_FEATURES, activation="relu", bias=False)
    x = torch.randn(BATCH, IN_FEATURES)
    with torch.no_grad():
        assert not torch.allclose(model(-x), -model(x))


def test_teaching_mlp_structure_and_parameter_count() -> None:
    model = mlp.teaching_mlp(3, 1)
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(256, 3), (128, 256), (128, 128), (1, 128)]  # 3 -> 256 -> 128 -> 128 -> 1
    assert all(m.bias is not None for m in model if isinstance(m, nn.Linear))
    assert sum(isinstance(m, nn.ReLU) for m in model) == 3
    assert not isinstance(model[-1], nn.ReLU)
    reference = _reference((3, 256, 128, 128, 1), nn.ReLU)
    assert mlp.count_parameters(model) == TEACHING_PARAMETERS == sum(p.numel() for p in reference.parameters())


def test_fashion_mnist_mlp_parameter_count() -> None:
    model = mlp.fashion_mnist_mlp()
    reference = nn.Sequential(nn.Flatten(), *_reference((784, 512, 512, 10), nn.ReLU))
    _copy_weights(model, reference)
    assert mlp.count_parameters(model) == FASHION_PARAMETERS == sum(p.numel() for p in reference.parameters())
    x = torch.rand(BATCH, *mlp.FASHION_MNIST_IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_count_parameters_trainable_only() -> None:
    model = mlp.teaching_mlp(3, 1)
    model[0].requires_grad_(False)
    assert mlp.count_parameters(model, trainable_only=True) == TEACHING_PARAMETERS - (3 * 256 + 256)


def test_fashion_mnist_mlp_returns_raw_logits() -> None:
    x = torch.rand(64, *mlp.FASHION_MNIST_IMAGE)
    with torch.no_grad():
        logits = mlp.fashion_mnist_mlp()(x)
        clipped = mlp.fashion_mnist_mlp(relu_on_logits=True)(x)
    assert logits.shape == (64, mlp.FASHION_MNIST_CLASSES)
    assert (logits < 0).any()  # raw logits: nothing clips negative scores
    assert (clipped >= 0).all()


def test_fashion_mnist_mlp_relu_on_logits_appends_relu() -> None:
    plain, clipped = mlp.fashion_mnist_mlp(), mlp.fashion_mnist_mlp(relu_on_logits=True)
    assert isinstance(plain[-1], nn.Linear)
    assert isinstance(clipped[-1], nn.ReLU)
    assert len(clipped) == len(plain) + 1


def test_uniform_shapes() -> None:
    model = mlp.uniform(width=16, depth=3, in_features=4, out_features=2, bias=False)
    assert [tuple(m.weight.shape) for m in model.linears] == [(16, 4), (16, 16), (16, 16), (2, 16)]
    assert all(m.bias is None for m in model.linears)
    single = mlp.uniform(width=8, depth=0)
    assert len(single) == 1 and tuple(single[0].weight.shape) == (8, 8)


def test_uniform_rejects_zero_width() -> None:
    with pytest.raises(ValueError, match=r"width.*>= 1.*got 0"):
        mlp.uniform(width=0, depth=2)


def test_uniform_rejects_negative_depth() -> None:
    with pytest.raises(ValueError, match=r"depth.*>= 0.*got -1"):
        mlp.uniform(width=8, depth=-1)


def test_mlp_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match=r"'swish2'.*valid:.*relu"):
        mlp.MLP(IN_FEATURES, HIDDEN, OUT_FEATURES, activation="swish2")


def test_mlp_rejects_zero_hidden_width() -> None:
    with pytest.raises(ValueError, match=r"hidden width.*>= 1.*got 0"):
        mlp.MLP(IN_FEATURES, (4, 0), OUT_FEATURES)
