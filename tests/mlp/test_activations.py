"""mlp.activations against torch.nn.functional, and the binary step against its definition."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import mlp

TEST_SEED = 0  # any fixed value: tests compare against references, not recorded numbers

# name -> the torch.nn.functional (or torch) function it must equal; independent of mlp's registry.
FUNCTIONAL_REFERENCE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # default negative_slope 0.01
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
}
STEP_NAMES = ("binary_step", "binary_step_ste")
RANDOM_POINTS = 2000
# Exact zeros (both signs), the STE window edges and values far into the tails.
SPECIAL_POINTS = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 30.0, -30.0)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(TEST_SEED)  # every test starts from the same RNG state, whatever ran before


def _inputs() -> torch.Tensor:
    return torch.cat([torch.randn(RANDOM_POINTS) * 4, torch.tensor(SPECIAL_POINTS)])


def test_every_activation_has_a_reference() -> None:
    assert set(mlp.ACTIVATIONS) == set(FUNCTIONAL_REFERENCE) | set(STEP_NAMES)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_REFERENCE))
def test_activation_matches_functional(name: str) -> None:
    x = _inputs().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = mlp.make_activation(name)(x)
    out_ref = FUNCTIONAL_REFERENCE[name](x_ref)
    torch.testing.assert_close(out, out_ref)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    out_ref.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_names_are_normalised() -> None:
    assert isinstance(mlp.make_activation(" GELU-Tanh "), torch.nn.GELU)


@pytest.mark.parametrize("name", STEP_NAMES)
def test_binary_step_forward(name: str) -> None:
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0])
    expected = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # 1 where x > 0; 0 at zero and below
    out = mlp.make_activation(name)(x)
    assert torch.equal(out, expected)
    random_x = _inputs()
    assert torch.equal(mlp.make_activation(name)(random_x), (random_x > 0).float())


def test_binary_step_zero_backward_is_exactly_zero() -> None:
    x = _inputs().requires_grad_()
    mlp.make_activation("binary_step")(x).backward(torch.randn(x.shape))
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_binary_step_ste_passes_gradient_inside_window() -> None:
    x = torch.tensor([-3.0, -1.0001, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001, 3.0], requires_grad=True)
    grad_out = torch.arange(1.0, 10.0)
    mlp.make_activation("binary_step_ste")(x).backward(grad_out)
    expected = torch.where(x.detach().abs() <= 1, grad_out, torch.zeros_like(grad_out))
    assert torch.equal(x.grad, expected)
    assert torch.equal(expected, torch.tensor([0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0, 0.0]))


def test_binary_step_keeps_dtype() -> None:
    x = torch.randn(8, dtype=torch.bfloat16)
    assert mlp.make_activation("binary_step")(x).dtype == torch.bfloat16


def test_torch_heaviside_has_no_backward() -> None:
    """Why BinaryStep is its own autograd Function: torch.heaviside cannot be trained through."""
    x = torch.randn(5, requires_grad=True)
    out = torch.heaviside(x, torch.tensor(0.0))
    with pytest.raises(RuntimeError, match="heaviside"):
        out.sum().backward()


def test_unknown_activation_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'swishy'.*valid:.*binary_step.*relu.*gelu"):
        mlp.make_activation("swishy")


def test_unknown_binary_step_backward_lists_valid_rules() -> None:
    with pytest.raises(ValueError, match=r"'straight'.*valid: zero, ste"):
        mlp.BinaryStep("straight")
