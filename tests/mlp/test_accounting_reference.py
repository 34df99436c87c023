"""mlp.accounting's figures that tests/mlp/test_accounting.py does not pin, each against a hand count or PyTorch.

One small net throughout, ``MLP(5, (7, 6), 3)`` with biases on a batch of 6, so every count below can be done on
paper: its layers are Linear 5->7, act, Linear 7->6, act, Linear 6->3 (111 parameters). The per-element FLOP
conventions are the documented ones (docs/design.md, mlp/activations.py's table), written out here as numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mlp
from mlp.accounting import plain_parameters, stored_sizes

B, IN, HIDDEN, OUT = 6, 5, (7, 6), 3
N_PARAMS = (5 * 7 + 7) + (7 * 6 + 6) + (6 * 3 + 3)  # 111
# documented conventions: (forward, backward) FLOPs per element
GELU, RELU = (8, 12), (1, 1)
LOSS = {"mse": (3, 3), "cross_entropy": (5, 3)}
OPTIMIZER = {"sgd": 2, "sgd_momentum": 4, "adam": 13, "adamw": 15}
BF16 = torch.finfo(torch.bfloat16).bits // 8  # 2
FP32 = torch.finfo(torch.float32).bits // 8  # 4


def net(activation: str = "relu") -> mlp.MLP:
    return mlp.MLP(IN, HIDDEN, OUT, activation=activation)


def test_the_net_is_the_one_counted_by_hand() -> None:
    assert sum(p.numel() for p in net().parameters()) == N_PARAMS


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZER))
def test_elementwise_flops_by_hand(loss: str, optimizer: str) -> None:
    f = mlp.flops(net("gelu"), B, loss=loss, optimizer=optimizer)
    bias_elems = B * (7 + 6 + 3)  # one add forward, one batch-sum backward per output element
    act_elems = B * (7 + 6)
    out_elems = B * OUT
    assert f.forward_elementwise == bias_elems + act_elems * GELU[0]
    assert f.backward_elementwise == bias_elems + act_elems * GELU[1] + out_elems * LOSS[loss][1]
    assert f.loss_elementwise == out_elems * LOSS[loss][0]
    assert f.optimizer_elementwise == N_PARAMS * OPTIMIZER[optimizer]
    matmul = 2 * B * (5 * 7 + 7 * 6 + 6 * 3)
    assert f.forward_matmul == matmul
    assert f.backward_matmul == 2 * matmul - 2 * B * 5 * 7  # no input gradient for the data
    assert f.step_matmul == 3 * matmul - 2 * B * 5 * 7
    step_ew = (2 * bias_elems + act_elems * sum(GELU) + out_elems * sum(LOSS[loss])
               + N_PARAMS * OPTIMIZER[optimizer])
    assert f.step_elementwise == step_ew
    assert f.as_dict() == {"forward_matmul": matmul, "backward_matmul": 2 * matmul - 2 * B * 5 * 7,
                           "forward_elementwise": f.forward_elementwise,
                           "backward_elementwise": f.backward_elementwise, "loss_elementwise": f.loss_elementwise,
                           "optimizer_elementwise": f.optimizer_elementwise,
                           "step_matmul": 3 * matmul - 2 * B * 5 * 7, "step_elementwise": step_ew}


def test_no_bias_no_elementwise_for_the_linears() -> None:
    f = mlp.flops(mlp.MLP(IN, HIDDEN, OUT, activation="relu", bias=False), B)
    assert f.forward_elementwise == B * (7 + 6) * RELU[0]
    assert f.backward_elementwise == B * (7 + 6) * RELU[1] + B * OUT * LOSS["mse"][1]


def test_inference_flops_are_the_forward_matmuls() -> None:
    assert mlp.inference_flops(net(), B) == 2 * B * (5 * 7 + 7 * 6 + 6 * 3)


# --------------------------------------------------------------------------- memory


def test_fp32_memory_by_hand() -> None:
    m = mlp.memory(net(), B, (IN,), loss="mse", optimizer="adam")
    params = N_PARAMS * FP32
    assert (m.parameters_bytes, m.gradients_bytes) == (params, params)
    assert m.optimizer_state_bytes == 2 * params + 6 * FP32  # exp_avg, exp_avg_sq; a step per tensor (6 tensors)
    relu_outs = B * (7 + 6) * FP32  # each saved once (the next Linear's input is the ReLU's output)
    logits = B * OUT * FP32  # mse_loss saves its input
    assert m.saved_activations_bytes == relu_outs + logits
    assert m.loss_saved_bytes == logits
    assert m.cast_weights_bytes == 0 and m.autocast_cache_bytes == 0
    assert m.data_bytes == B * IN * FP32 + B * OUT * FP32
    assert m.unsaved_output_bytes == logits  # the last Linear's output: no layer saves it
    # inference: the widest layer's input + output; the batch is data, so the first layer counts its output only
    assert m.widest_pair_bytes == max(B * 7 * FP32, 2 * B * 7 * FP32, B * (7 + 6) * FP32, 2 * B * 6 * FP32,
                                      B * (6 + 3) * FP32) == 2 * B * 7 * FP32


def test_bf16_autocast_memory_by_hand() -> None:
    m = mlp.memory(net(), B, (IN,), loss="mse", precision="bf16", optimizer="adam")
    w = {1: 5 * 7, 2: 7 * 6, 3: 6 * 3}
    assert m.optimizer_state_bytes == 2 * N_PARAMS * FP32 + 6 * FP32  # fp32 master weights: fp32 moments
    assert m.cast_weights_bytes == (w[2] + w[3]) * BF16  # the first weight is cast but no matmul saves it
    assert m.autocast_cache_bytes == w[1] * BF16 + (7 + 6 + 3) * BF16  # the first weight, and every bias
    cast_batch = B * IN * BF16  # the first matmul saves the cast batch
    relu_outs = B * (7 + 6) * BF16
    fp32_logits = B * OUT * FP32  # mse_loss runs in fp32: autocast saves its fp32 copy
    assert m.loss_saved_bytes == fp32_logits
    assert m.saved_activations_bytes == cast_batch + relu_outs + fp32_logits + m.cast_weights_bytes
    assert m.unsaved_output_bytes == B * OUT * BF16
    assert m.parameters_bytes == N_PARAMS * FP32 and m.data_bytes == B * (IN + OUT) * FP32
    # the widest inference layer: Linear 7->6 with its input, output, cast weight and cast bias
    pairs = [cast_batch + B * 7 * BF16 + (w[1] + 7) * BF16, 2 * B * 7 * BF16,
             B * (7 + 6) * BF16 + (w[2] + 6) * BF16, 2 * B * 6 * BF16, B * (6 + 3) * BF16 + (w[3] + 3) * BF16]
    assert m.widest_pair_bytes == max(pairs) == pairs[2]


@pytest.mark.parametrize("precision, device, log_softmax_bytes", [
    ("fp32", "cpu", B * OUT * FP32 + FP32),
    ("bf16", "cpu", B * OUT * FP32 + FP32),  # autocast runs log_softmax in fp32
    ("bf16", "cuda", B * OUT * (BF16 + FP32) + FP32),  # CUDA: the bf16 result and nll_loss's fp32 copy
    ("fp16", "cuda", B * OUT * (BF16 + FP32) + FP32),
    ("fp32", "cuda", B * OUT * FP32 + FP32),  # no autocast: no half-precision copy
])
def test_cross_entropy_saves_log_softmax_and_total_weight(precision: str, device: str, log_softmax_bytes: int) -> None:
    m = mlp.memory(net(), B, (IN,), loss="cross_entropy", precision=precision, device=device)
    assert m.loss_saved_bytes == log_softmax_bytes
    assert m.data_bytes == B * IN * FP32 + B * 8  # int64 labels


def test_a_net_ending_in_an_activation_leaves_nothing_unsaved() -> None:
    model = nn.Sequential(nn.Linear(IN, 7), nn.ReLU(), nn.Linear(7, OUT), nn.ReLU())
    m = mlp.memory(model, B, (IN,), loss="mse")
    assert m.unsaved_output_bytes == 0
    assert m.loss_saved_bytes == 0  # mse_loss's input is the ReLU's output, which the ReLU saves already
    assert m.saved_activations_bytes == B * (7 + OUT) * FP32
    bf16 = mlp.memory(model, B, (IN,), loss="mse", precision="bf16")
    assert bf16.loss_saved_bytes == B * OUT * FP32  # under autocast the loss's fp32 copy is saved


def _phase_fields() -> dict[str, int]:
    names = ["parameters_bytes", "gradients_bytes", "optimizer_state_bytes", "saved_activations_bytes",
             "cast_weights_bytes", "data_bytes", "loss_saved_bytes", "unsaved_output_bytes", "autocast_cache_bytes",
             "widest_pair_bytes"]
    return {name: 2 ** (3 * i) for i, name in enumerate(names)}  # disjoint bits: any wrong term shows


def test_phase_peaks_are_the_documented_sums() -> None:
    v = _phase_fields()
    m = mlp.Memory(**v)
    persistent = v["parameters_bytes"] + v["optimizer_state_bytes"] + v["data_bytes"]
    total = persistent + v["gradients_bytes"] + v["saved_activations_bytes"]
    assert m.total_bytes == total and m.persistent_bytes == persistent
    assert m.phase_peak_bytes() == {
        "forward": persistent + v["saved_activations_bytes"] - v["loss_saved_bytes"] + v["unsaved_output_bytes"]
        + v["autocast_cache_bytes"],
        "backward": total, "step": total, "optimizer": persistent + v["gradients_bytes"],
        "inference": persistent + v["widest_pair_bytes"]}
    assert m.as_dict() == {**v, "total_bytes": total}


# --------------------------------------------------------------------------- parameters in the compute dtype


def _saved_bytes(step: mlp.TrainStep, x: torch.Tensor, y: torch.Tensor) -> int:
    """Distinct storages autograd saves in forward + loss, less the parameters, the batch and the target."""
    excluded = {t.untyped_storage().data_ptr() for t in (x, y, *step.model.parameters())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in excluded:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step.loss_backward(step.forward(x), y)
    return sum(saved.values())


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_compute_dtype_parameters_match_a_bf16_step(loss: str) -> None:
    """param_dtype 'compute': what a real bf16 step holds (PyTorch's own tensors) is what memory() says."""
    step = mlp.TrainStep(net(), loss=loss, optimizer="adam", precision="bf16",
                         knobs=mlp.StepKnobs(param_dtype=mlp.ParamDtype.COMPUTE))
    x = torch.randn(B, IN)
    y = torch.randn(B, OUT) if loss == "mse" else torch.randint(0, OUT, (B,))
    x, y = step.prepare(x, y)
    saved = _saved_bytes(step, x, y)
    grads = sum(p.grad.nbytes for p in step.model.parameters())
    step.optimizer.step()
    state = sum(t.nbytes for t in mlp.optimizer_state_tensors(step.optimizer))
    m = mlp.memory(net(), B, (IN,), loss=loss, optimizer="adam", precision="bf16", param_dtype="compute")
    assert m.parameters_bytes == sum(p.nbytes for p in step.model.parameters()) == N_PARAMS * BF16
    assert m.gradients_bytes == grads
    assert m.optimizer_state_bytes == state == 2 * N_PARAMS * BF16 + 6 * FP32
    assert m.data_bytes == x.nbytes + y.nbytes
    assert m.saved_activations_bytes == saved
    assert m.cast_weights_bytes == 0 and m.autocast_cache_bytes == 0


def test_optimizer_state_in_another_element_size() -> None:
    assert mlp.optimizer_state_bytes(net(), "sgd_momentum", element_size=BF16) == N_PARAMS * BF16
    assert mlp.optimizer_state_bytes(net(), "adamw", element_size=BF16) == 2 * N_PARAMS * BF16 + 6 * FP32
    assert mlp.optimizer_state_bytes(net(), "sgd", element_size=BF16) == 0


@pytest.mark.parametrize("precision, param_dtype, expected", [
    ("fp32", "fp32", (FP32, False, False)), ("fp32", "compute", (FP32, False, False)),
    ("tf32", "compute", (FP32, False, False)), ("bf16", "fp32", (BF16, True, False)),
    ("bf16", "compute", (BF16, False, True)), ("fp16", "fp32", (BF16, True, False)),
    ("fp16", "compute", (BF16, False, True)),
])
def test_stored_sizes(precision: str, param_dtype: str, expected: tuple[int, bool, bool]) -> None:
    assert stored_sizes(mlp.Precision(precision), mlp.ParamDtype(param_dtype)) == expected


def test_block_nets_refuse_compute_parameters_and_the_fused_epilogue() -> None:
    block = mlp.block_net("ffn", 4, 1)
    for pure, fused in [(True, False), (False, True)]:
        with pytest.raises(ValueError, match=r"^param_dtype 'compute' and the fused epilogue are accounted for the "
                                             r"uniform, teaching and FashionMNIST nets only, not for the block nets$"):
            plain_parameters(block, pure, fused)
    plain_parameters(block, False, False)
    plain_parameters(net(), True, True)  # the plain nets are accounted either way
    with pytest.raises(ValueError, match="not for the block nets"):
        mlp.memory(block, 2, (4,), precision="bf16", param_dtype="compute")


# --------------------------------------------------------------------------- layers and errors


def test_block_layers_in_call_order() -> None:
    """The Linears, activations, norms and dropouts of each block net, as its printed architecture lists them."""
    def kinds(model):
        return [(l.kind, l.in_features, l.out_features, l.bias) for l in mlp.layers_of(model)]
    assert kinds(mlp.block_net("ffn", 4, 1)) == [("linear", 4, 16, True), ("gelu", 16, 16, False),
                                                  ("linear", 16, 4, True)]
    assert kinds(mlp.block_net("residual", 4, 1, norm="rmsnorm", dropout=0.1, bias=False)) == [
        ("rmsnorm", 4, 4, False), ("linear", 4, 16, False), ("gelu", 16, 16, False), ("linear", 16, 4, False),
        ("dropout", 4, 4, False), ("rmsnorm", 4, 4, False)]
    swiglu = mlp.block_net("swiglu", 4, 1, hidden=8)
    assert kinds(swiglu) == [("linear", 4, 8, True), ("silu", 8, 8, False), ("linear", 8, 4, True),
                             ("linear", 4, 8, True)]


def test_layers_of_a_plain_net() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4, bias=False), nn.GELU(approximate="tanh"), nn.Linear(4, 2))
    assert mlp.layers_of(model) == [mlp.accounting.Layer("linear", 6, 4, False),
                                    mlp.accounting.Layer("gelu_tanh", 4, 4), mlp.accounting.Layer("linear", 4, 2, True)]


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), r"^activation ReLU\(\) before the first Linear is not supported$"),
    (nn.Sequential(nn.Flatten()), "^model has no Linear layer$"),
    (nn.Sequential(nn.Linear(3, 2), nn.LeakyReLU(0.2)),
     r"^no accounting for module LeakyReLU\(negative_slope=0.2\)$"),
    (nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)), r"^no accounting for module Dropout\(p=0.5, inplace=False\)$"),
])
def test_layers_of_refuses_what_it_cannot_account(model: nn.Module, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mlp.layers_of(model)


@pytest.mark.parametrize("batch", [0, -1, True, 2.0, "4"])
def test_a_batch_that_is_not_a_positive_integer_is_refused(batch) -> None:
    for count in (lambda: mlp.flops(net(), batch), lambda: mlp.memory(net(), batch, (IN,))):
        with pytest.raises(ValueError, match=f"batch must be an integer >= 1, got {batch!r}"):
            count()


# --------------------------------------------------------------------------- the block nets


@pytest.mark.parametrize("loss, precision, device, loss_saved, data", [
    ("mse", "fp32", "cpu", 2 * 4 * FP32, 2 * 4 * FP32 * 2),  # mse_loss saves the fp32 output
    ("mse", "bf16", "cpu", 2 * 4 * FP32, 2 * 4 * FP32 * 2),  # ... and autocast's fp32 copy of the bf16 output
    ("cross_entropy", "fp32", "cpu", 2 * 4 * FP32 + FP32, 2 * 4 * FP32 + 2 * 8),  # log_softmax, total_weight
    ("cross_entropy", "bf16", "cpu", 2 * 4 * FP32 + FP32, 2 * 4 * FP32 + 2 * 8),
    ("cross_entropy", "bf16", "cuda", 2 * 4 * (FP32 + BF16) + FP32, 2 * 4 * FP32 + 2 * 8),  # + the bf16 result
])
def test_a_block_nets_memory_by_hand(loss: str, precision: str, device: str, loss_saved: int, data: int) -> None:
    """block_net('ffn', 4, 1): Linear 4->16, GELU, Linear 16->4 with biases, on a batch of 2."""
    m = mlp.memory(mlp.block_net("ffn", 4, 1), 2, (4,), loss=loss, precision=precision, device=device)
    act = FP32 if precision == "fp32" else BF16
    assert m.loss_saved_bytes == loss_saved and m.data_bytes == data
    assert m.unsaved_output_bytes == 2 * 4 * act  # fc_out's output: nothing in the net saves it
    cast = precision != "fp32"
    assert m.cast_weights_bytes == (16 * 4 * BF16 if cast else 0)  # fc_out's weight (fc_in's: no input gradient)
    assert m.autocast_cache_bytes == ((4 * 16 + 16 + 4) * BF16 if cast else 0)  # fc_in's weight, both biases
    # inference: the widest operator's input, output (and casts): GELU in fp32; fc_in under autocast, reading the
    # cast batch and its cast weight and bias
    assert m.widest_pair_bytes == (2 * 4 * BF16 + 2 * 16 * BF16 + (4 * 16 + 16) * BF16 if cast else 2 * 2 * 16 * FP32)
    assert m.phase_peak_bytes()["forward"] == (m.persistent_bytes + m.saved_activations_bytes - loss_saved
                                               + m.unsaved_output_bytes + m.autocast_cache_bytes)


@pytest.mark.parametrize("loss, optimizer", [("cross_entropy", "adam"), ("mse", "sgd_momentum")])
def test_a_block_nets_flops_by_hand(loss: str, optimizer: str) -> None:
    """block_net('ffn', 4, 1) on a batch of 2: 148 parameters, GELU on 2 x 16 elements."""
    f = mlp.flops(mlp.block_net("ffn", 4, 1), 2, loss=loss, optimizer=optimizer)
    bias, gelu, logits = 2 * (16 + 4), 2 * 16, 2 * 4
    assert f.forward_matmul == 2 * 2 * (4 * 16 + 16 * 4)
    assert f.backward_matmul == 2 * f.forward_matmul - 2 * 2 * 4 * 16  # fc_in has no input gradient
    assert f.forward_elementwise == bias + gelu * GELU[0]
    assert f.backward_elementwise == bias + gelu * GELU[1] + logits * LOSS[loss][1]
    assert f.loss_elementwise == logits * LOSS[loss][0]
    assert f.optimizer_elementwise == (4 * 16 + 16 + 16 * 4 + 4) * OPTIMIZER[optimizer]
    with_input_grad = mlp.flops(mlp.block_net("ffn", 4, 1), 2, loss=loss, input_requires_grad=True)
    assert with_input_grad.backward_matmul == 2 * f.forward_matmul  # fc_in's input gradient too


@pytest.mark.parametrize("count, message", [
    (lambda: mlp.flops(net(), B, loss="l1"), "unknown loss 'l1'"),
    (lambda: mlp.flops(net(), B, optimizer="lion"), "unknown optimizer 'lion'"),
    (lambda: mlp.memory(net(), B, (IN,), loss="l1"), "unknown loss 'l1'"),
    (lambda: mlp.memory(net(), B, (IN,), precision="int8"), "unknown dtype 'int8'"),
    (lambda: mlp.memory(net(), B, (IN,), param_dtype="int8"), "unknown param_dtype 'int8'"),
    (lambda: mlp.optimizer_state_bytes(net(), "lion"), "unknown optimizer 'lion'"),
])
def test_an_unknown_choice_is_named_in_its_error(count, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        count()


@pytest.mark.parametrize("precision, widest", [
    ("fp32", 2 * 4 * 8 * FP32),  # GELU's input and output (fc_in reads the batch, which is data)
    ("bf16", 4 * 8 * BF16 * 2 + (8 * 8 + 8) * BF16),  # fc_in: the cast batch, its output, cast weight and bias
])
def test_the_inference_live_set_of_a_dropout_net_is_its_eval_mode_one(precision: str, widest: int) -> None:
    """ffn at expansion 1 (Linear 8->8, GELU, Linear 8->8, Dropout) on a batch of 4, where a training-mode dropout
    would be the widest operator: in eval mode nn.Dropout is the identity, so the live set is the p = 0 net's."""
    dropped, plain = (mlp.block_net("ffn", 8, 1, expansion=1, dropout=p) for p in (0.25, 0.0))
    for device in ("cpu", "cuda"):
        assert mlp.memory(dropped, 4, (8,), precision=precision, device=device).widest_pair_bytes == widest
        assert mlp.memory(plain, 4, (8,), precision=precision, device=device).widest_pair_bytes == widest


@pytest.mark.parametrize("precision, widest", [
    ("fp32", B * OUT * FP32),  # its output only: the batch it reads is data
    ("bf16", B * IN * BF16 + B * OUT * BF16 + (IN * OUT + OUT) * BF16),  # the cast batch, output, weight and bias
])
def test_a_single_linear_is_its_own_widest_layer(precision: str, widest: int) -> None:
    assert mlp.memory(mlp.MLP(IN, (), OUT), B, (IN,), precision=precision).widest_pair_bytes == widest
