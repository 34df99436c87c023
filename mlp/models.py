"""Reference networks: a general MLP, the uniform sweep family, and the classic presets."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .activations import make_activation


class MLP(nn.Sequential):
    """``[Flatten] → Linear → act → ... → Linear``, an ``nn.Sequential`` so it prints like the classics.

    ``hidden`` lists the hidden widths; ``hidden=()`` is a single linear map.
    The output layer has no activation: it returns raw logits / predictions.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
        bias: bool = True,
        flatten: bool = False,
    ):
        hidden = tuple(hidden)
        _check_positive("in_features", in_features)
        _check_positive("out_features", out_features)
        for width in hidden:
            _check_positive("hidden width", width)
        make_activation(activation)  # validate early, with the list of valid names
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        sizes = (in_features, *hidden)
        for fan_in, fan_out in zip(sizes, hidden):
            layers += [nn.Linear(fan_in, fan_out, bias=bias), make_activation(activation)]
        layers.append(nn.Linear(sizes[-1], out_features, bias=bias))
        super().__init__(*layers)
        self.in_features = in_features
        self.hidden = hidden
        self.out_features = out_features
        self.activation = activation
        self.bias = bias
        self.flatten = flatten

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]


def uniform(
    width: int,
    depth: int,
    activation: str = "relu",
    in_features: int | None = None,
    out_features: int | None = None,
    bias: bool = True,
) -> MLP:
    """The sweep family: ``depth`` hidden layers of ``width`` units each.

    ``in_features`` and ``out_features`` default to ``width`` (a square stack).
    ``depth=0`` is one Linear ``in → out``.
    """
    _check_positive("width", width)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    return MLP(
        in_features if in_features is not None else width,
        (width,) * depth,
        out_features if out_features is not None else width,
        activation=activation,
        bias=bias,
    )


def teaching_mlp(num_inputs: int, num_outputs: int, activation: str = "relu") -> MLP:
    """The classic teaching net ``in → 256 → 128 → 128 → out`` with ReLU.

    The original notebook defined these layers but reused its first layer in
    ``forward`` by mistake, so it crashed on most inputs; this is the network
    it meant to build.
    """
    return MLP(num_inputs, (256, 128, 128), num_outputs, activation=activation)


FASHION_MNIST_IMAGE = (1, 28, 28)
FASHION_MNIST_CLASSES = 10


def fashion_mnist_mlp(relu_on_logits: bool = False) -> MLP:
    """The FashionMNIST classifier ``Flatten, 784 → 512 → 512 → 10``, ReLU between layers.

    It returns raw logits. The classic tutorial also put a ReLU on the logits,
    which clips every negative score to 0: ``CrossEntropyLoss`` then cannot push
    a wrong class below zero, tied zeros lose the ranking, and a class whose
    logit goes negative gets no gradient (a dead output). ``relu_on_logits=True``
    reproduces that original for comparison only.
    """
    model = MLP(784, (512, 512), FASHION_MNIST_CLASSES, activation="relu", flatten=True)
    if relu_on_logits:
        model.append(nn.ReLU())
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
