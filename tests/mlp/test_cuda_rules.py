"""mlp.memory's CUDA rules without a GPU: the tensors autograd saves for a step on *fake* CUDA tensors.

``FakeTensorMode`` runs the real dispatcher with CUDA tensors that have no data: the C++ composites take
their CUDA branches (``native_dropout``, the fused RMSNorm, ``log_softmax``'s half-to-float path), autocast
applies its CUDA lists, and autograd saves what it would save on a GPU. ``torch.autocast`` refuses CUDA
where none is available, so the autocast state is set directly (what it sets, without the check).
Shapes and dtypes only: nothing here times or allocates on a device.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef

import mlp

BATCH = 4
BLOCKS = [  # (kind, keyword arguments)
    ("ffn", dict(dropout=0.25, in_features=5)),
    ("swiglu", dict(hidden=12, dropout=0.25, bias=False)),
    ("residual", dict(norm="layernorm", out_features=3)),
    ("residual", dict(norm="layernorm", bias=False, in_features=5, dropout=0.25)),
    ("residual", dict(norm="rmsnorm", dropout=0.25)),
    ("residual", dict(norm="rmsnorm", in_features=5, out_features=3)),
    ("residual", dict(norm="none")),
]
MLPS = [(5, (7, 6), 3, "relu"), (5, (7,), 3, "gelu"), (6, (), 2, "tanh"), (5, (7,), 3, "relu_on_logits")]


@contextlib.contextmanager
def _cuda_autocast(dtype: torch.dtype | None):
    if dtype is None:
        yield
        return
    previous = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", previous[0])
        torch.set_autocast_dtype("cuda", previous[1])


def _fake_cuda_saved_bytes(build, in_features: int, out_features: int, loss: str, precision: str) -> tuple[int, int]:
    """Bytes of the distinct storages autograd saves in forward + loss, and of every tensor it packs.

    Backward unpacks each packed tensor once (tests/mlp/test_blocks.py checks that against real unpacks on the
    CPU); a fake CUDA backward cannot run (the autograd engine wants a CUDA context), so the packs stand for it.
    """
    with warnings.catch_warnings(), FakeTensorMode():
        warnings.simplefilter("ignore")  # RMSNorm's "cannot dispatch to fused implementation" under CPU rules
        with torch.device("cuda"):
            model = build()
            x = torch.randn(BATCH, in_features)
            y = torch.randn(BATCH, out_features) if loss == "mse" else torch.randint(0, out_features, (BATCH,))
        key = lambda t: StorageWeakRef(t.untyped_storage()).cdata  # noqa: E731 (one id per storage, fake or not)
        excluded = {key(t) for t in (x, y, *model.parameters())}
        saved: dict[int, int] = {}
        reads = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            reads.append(tensor.numel() * tensor.element_size())
            if key(tensor) not in excluded:
                saved[key(tensor)] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with _cuda_autocast(mlp.Precision(precision).autocast_dtype):
                mlp.make_loss(loss)(model(x), y)
    return sum(saved.values()), sum(reads)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # fp16: the same autocast lists, checked on the MLPs
@pytest.mark.parametrize("kind, kwargs", BLOCKS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BLOCKS)])
def test_block_saved_activations_on_cuda(kind, kwargs, precision, loss):
    build = lambda: mlp.block_net(kind, 8, 2, activation="gelu", **kwargs)  # noqa: E731
    with torch.device("meta"):
        net = build()
    analytic = mlp.memory(net, BATCH, (net.in_features,), loss, precision=precision, device="cuda")
    traffic = mlp.traffic(net, BATCH, (net.in_features,), loss, precision=precision, device="cuda")
    saved, reads = _fake_cuda_saved_bytes(build, net.in_features, net.out_features, loss, precision)
    assert analytic.saved_activations_bytes == saved
    assert traffic.backward.saved_bytes == reads


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])  # fp32 has no device-specific rule
@pytest.mark.parametrize("sizes", MLPS, ids=str)
def test_mlp_saved_activations_on_cuda(sizes, precision, loss):
    n_in, hidden, n_out, activation = sizes
    def build() -> mlp.MLP:
        if activation == "relu_on_logits":  # as fashion_mnist_original: the logits are saved by their ReLU
            return mlp.MLP(n_in, hidden, n_out).append(torch.nn.ReLU())
        return mlp.MLP(n_in, hidden, n_out, activation=activation)

    with torch.device("meta"):
        net = build()
    analytic = mlp.memory(net, BATCH, (n_in,), loss, precision=precision, device="cuda")
    traffic = mlp.traffic(net, BATCH, (n_in,), loss, precision=precision, device="cuda")
    saved, reads = _fake_cuda_saved_bytes(build, n_in, n_out, loss, precision)
    assert analytic.saved_activations_bytes == saved
    assert traffic.backward.saved_bytes == reads
