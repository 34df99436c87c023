"""mlp.traffic's parts that tests/mlp/test_traffic.py does not pin, against hand counts and real tensors' bytes.

The net is ``MLP(5, (7,), 3)`` with biases (Linear 5->7, ReLU, Linear 7->3: 66 parameters) on a batch of 6.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mlp
from mlp.traffic import Gemm, Traffic, square

B, IN, HID, OUT = 6, 5, 7, 3
PARAMS = (IN * HID + HID) + (HID * OUT + OUT)  # 66
FP32, BF16 = 4, torch.finfo(torch.bfloat16).bits // 8


def net() -> mlp.MLP:
    return mlp.MLP(IN, (HID,), OUT)


def test_a_gemms_flops_and_label() -> None:
    assert Gemm(4, 8, 16).flops == 2 * 4 * 8 * 16
    assert Gemm(4, 8, 16).label == "4x8x16 nn"
    assert Gemm(4, 8, 16, trans_a=True).label == "4x8x16 tn"
    assert Gemm(4, 8, 16, trans_b=True, bias=True).label == "4x8x16 nt +bias"
    assert square(5) == Gemm(5, 5, 5, False, False, False)


def test_the_gemms_by_hand() -> None:
    assert mlp.gemms(net(), B) == [
        Gemm(B, IN, HID, trans_b=True, bias=True), Gemm(B, HID, OUT, trans_b=True, bias=True),  # forward
        Gemm(B, OUT, HID), Gemm(OUT, B, HID, trans_a=True),  # last layer: input grad, weight grad
        Gemm(HID, B, IN, trans_a=True)]  # first layer: its weight gradient only (the data needs none)
    with_input = mlp.gemms(net(), B, input_requires_grad=True)
    assert with_input[-2:] == [Gemm(B, HID, IN), Gemm(HID, B, IN, trans_a=True)]


def test_traffic_adds_by_kind_and_totals_without_the_saved_share() -> None:
    a = Traffic(1, 2, 4, 8, 16, 32)
    b = Traffic(64, 128, 256, 512, 1024, 2048)
    assert a + b == Traffic(65, 130, 260, 520, 1040, 2080)
    assert a.total_bytes == 1 + 2 + 4 + 8 + 16  # saved_bytes is a part of the others, not added
    assert a.as_dict() == {"weights_bytes": 1, "activations_bytes": 2, "gradients_bytes": 4,
                           "optimizer_state_bytes": 8, "data_bytes": 16, "saved_bytes": 32, "total_bytes": 31}


@pytest.mark.parametrize("optimizer, passes", [("sgd", 3), ("sgd_momentum", 5), ("adam", 7), ("adamw", 7)])
def test_the_optimizer_phase_by_hand(optimizer: str, passes: int) -> None:
    """Reads p and g and writes p (SGD); momentum reads and writes its buffer; Adam its two moments."""
    t = mlp.traffic(net(), B, (IN,), optimizer=optimizer)
    assert t.optimizer.total_bytes == passes * PARAMS * FP32
    assert t.optimizer.gradients_bytes == PARAMS * FP32
    pure = mlp.traffic(net(), B, (IN,), optimizer=optimizer, precision="bf16", param_dtype="compute")
    assert pure.optimizer.total_bytes == passes * PARAMS * BF16


def test_the_phases_add_up_to_the_step() -> None:
    t = mlp.traffic(net(), B, (IN,), loss="cross_entropy", optimizer="adam")
    assert t.step == t.forward + t.backward + t.optimizer
    assert t.inference == t.forward and t.phase("backward") == t.backward


def test_the_fp32_forward_by_hand() -> None:
    t = mlp.traffic(net(), B, (IN,)).forward
    assert t.weights_bytes == PARAMS * FP32
    assert t.data_bytes == B * IN * FP32
    # Linear 1 writes (B, 7); ReLU reads and writes it; Linear 2 reads it and writes (B, 3)
    assert t.activations_bytes == B * HID * FP32 * 4 + B * OUT * FP32
    assert t.saved_bytes == 0


def test_compute_dtype_parameters_and_batch() -> None:
    t = mlp.traffic(net(), B, (IN,), precision="bf16", param_dtype="compute").forward
    assert t.weights_bytes == PARAMS * BF16  # no fp32 master weights, no casts
    assert t.data_bytes == B * IN * BF16


def test_known_traffic_by_hand() -> None:
    model = nn.Sequential(nn.Linear(IN, HID), nn.GELU(), nn.Linear(HID, OUT))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    for loss, target in (("mse", B * OUT * FP32), ("cross_entropy", B * 8)):
        t = mlp.known_traffic(model, B, (IN,), OUT, loss, "sgd_momentum")
        assert t.forward == Traffic(weights_bytes=params, data_bytes=B * IN * FP32)
        assert t.backward == Traffic(gradients_bytes=params, data_bytes=target)
        assert t.optimizer.total_bytes == 5 * params


@pytest.mark.parametrize("count, message", [
    (lambda: mlp.traffic(net(), B, (IN,), loss="l1"), "unknown loss 'l1'"),
    (lambda: mlp.traffic(net(), B, (IN,), optimizer="lion"), "unknown optimizer 'lion'"),
    (lambda: mlp.traffic(net(), B, (IN,), precision="int8"), "unknown dtype 'int8'"),
    (lambda: mlp.traffic(net(), B, (IN,), param_dtype="int8"), "unknown param_dtype 'int8'"),
    (lambda: mlp.known_traffic(net(), B, (IN,), OUT, loss="l1"), "unknown loss 'l1'"),
    (lambda: mlp.known_traffic(net(), B, (IN,), OUT, optimizer="lion"), "unknown optimizer 'lion'"),
])
def test_an_unknown_choice_is_named_in_its_error(count, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        count()


def test_a_block_nets_data_weights_and_optimizer_bytes_by_hand() -> None:
    """block_net('ffn', 4, 1): Linear 4->16, GELU, Linear 16->4 with biases (148 parameters), a batch of 2."""
    t = mlp.traffic(mlp.block_net("ffn", 4, 1), 2, (4,))
    params = (4 * 16 + 16 + 16 * 4 + 4) * FP32
    assert (t.forward.weights_bytes, t.forward.data_bytes) == (params, 2 * 4 * FP32)
    # backward: fc_in's weight gradient reads the batch; the loss reads the target, and reads it again as saved
    assert t.backward.data_bytes == 2 * 4 * FP32 + 2 * (2 * 4 * FP32)
    assert t.optimizer.total_bytes == 3 * params  # sgd: read p and g, write p


def test_a_block_nets_cuda_rules() -> None:
    ffn = mlp.block_net("ffn", 4, 1)
    cpu = mlp.traffic(ffn, 2, (4,), loss="cross_entropy", precision="bf16")
    cuda = mlp.traffic(ffn, 2, (4,), loss="cross_entropy", precision="bf16", device="cuda")
    # CUDA's log_softmax result is bf16: backward reads 2 bytes a logit where the CPU's fp32 one is 4
    assert cpu.backward.total_bytes - cuda.backward.total_bytes == 2 * 4 * (4 - 2)
    dropped = mlp.block_net("ffn", 4, 1, dropout=0.5)
    cpu, cuda = (mlp.traffic(dropped, 2, (4,), device=d) for d in ("cpu", "cuda"))
    # dropout's mask over the (2, 4) output: the input dtype on the CPU (4 bytes), bool on CUDA (1): written
    # in forward, read in backward
    assert cpu.forward.total_bytes - cuda.forward.total_bytes == 2 * 4 * (4 - 1)
    assert cpu.backward.total_bytes - cuda.backward.total_bytes == 2 * 4 * (4 - 1)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_dropout_nets_inference_is_the_forward_of_the_same_net_without(precision: str, device: str) -> None:
    """In eval mode nn.Dropout is the identity (PyTorch's own rule): inference moves what p = 0's forward does
    (a pre-norm residual net: on CUDA under autocast its LayerNorms read an fp32 copy, in eval mode too)."""
    dropped, plain = (mlp.block_net("residual", 4, 1, norm="layernorm", dropout=p) for p in (0.5, 0.0))
    assert mlp.traffic(dropped, 2, (4,), precision=precision, device=device).inference == \
        mlp.traffic(plain, 2, (4,), precision=precision, device=device).forward


def test_the_fp32_backward_by_hand() -> None:
    t = mlp.traffic(net(), B, (IN,)).backward
    x, h, y = B * IN * FP32, B * HID * FP32, B * OUT * FP32  # the batch, the hidden layer, the logits
    w1, b1, w2, b2 = IN * HID * FP32, HID * FP32, HID * OUT * FP32, OUT * FP32
    # the loss reads the logits and its saved input (the logits); ReLU its saved output; Linear 2 its saved input
    assert t.activations_bytes == y + y + h + h
    assert t.data_bytes == x + y + y  # Linear 1's weight gradient reads the batch; the loss the target, twice
    assert t.weights_bytes == w2  # Linear 2's input gradient reads W2 (Linear 1 has none)
    grads = (y + w2 + y + b2 + y + h) + 2 * h + (h + w1 + h + b1) + y  # Linear 2, ReLU, Linear 1, the loss's grad
    assert t.gradients_bytes == grads
    assert t.saved_bytes == (y + h + h) + x + w2 + y  # what the step reads back of the tensors autograd saved


def test_the_bf16_autocast_backward_activations_by_hand() -> None:
    t = mlp.traffic(net(), B, (IN,), precision="bf16").backward
    x, h, y, y32 = B * IN * BF16, B * HID * BF16, B * OUT * BF16, B * OUT * FP32
    # the cast batch (Linear 1's saved input), ReLU's saved output, Linear 2's saved input; the loss reads the bf16
    # logits, writes and reads their fp32 copy, and reads that saved copy in its backward
    assert t.activations_bytes == x + h + h + (y + y + y32) + y32
    assert t.data_bytes == y32 + y32  # the fp32 target, read twice; the batch is read as its cast copy


def test_the_bf16_autocast_forward_by_hand() -> None:
    t = mlp.traffic(net(), B, (IN,), precision="bf16").forward
    x, h, y = B * IN * BF16, B * HID * BF16, B * OUT * BF16
    assert t.data_bytes == B * IN * FP32  # the fp32 batch, read once to cast it
    assert t.weights_bytes == PARAMS * FP32 + 2 * PARAMS * BF16  # each fp32 parameter read; its copy written, read
    # the cast batch written and read by Linear 1; each operator writes its output, and the next one reads it
    assert t.activations_bytes == x + (x + h) + (h + h) + (h + y)


def test_the_fused_epilogue_by_hand() -> None:
    """A ReLU right after a Linear costs no forward bytes with the fused epilogue; a ReLU that ends the net too."""
    h, y = B * HID * FP32, B * OUT * FP32
    assert mlp.traffic(net(), B, (IN,), fused_epilogue=True).forward.activations_bytes == h + (h + y)
    ends_in_relu = nn.Sequential(nn.Linear(IN, HID), nn.ReLU(), nn.Linear(HID, OUT), nn.ReLU())
    assert mlp.traffic(ends_in_relu, B, (IN,), fused_epilogue=True).forward.activations_bytes == h + (h + y)
    assert mlp.traffic(ends_in_relu, B, (IN,)).forward.activations_bytes == h + 2 * h + (h + y) + 2 * y


def test_block_nets_refuse_compute_parameters_and_the_fused_epilogue() -> None:
    block = mlp.block_net("ffn", 4, 1)
    for kwargs in ({"fused_epilogue": True}, {"precision": "bf16", "param_dtype": "compute"}):
        with pytest.raises(ValueError, match="not for the block nets$"):
            mlp.traffic(block, 2, (4,), **kwargs)


def test_a_block_nets_input_gradient_is_one_more_product() -> None:
    ffn = mlp.block_net("ffn", 4, 1)
    plain, with_input = mlp.gemms(ffn, 2), mlp.gemms(ffn, 2, input_requires_grad=True)
    extra = list(with_input)
    for g in plain:
        extra.remove(g)
    assert extra == [Gemm(2, 16, 4)]  # fc_in's input gradient: grad (2 x 16) @ W (16 x 4)


def test_the_bf16_autocast_backward_gradients_by_hand() -> None:
    t = mlp.traffic(net(), B, (IN,), precision="bf16").backward
    h, y, y32 = B * HID * BF16, B * OUT * BF16, B * OUT * FP32
    w1, w2 = IN * HID, HID * OUT  # elements
    # each Linear: its output's grad read, the fp32 .grad written and its bf16 copy written and read; the bias's
    # grad: the output grad read, the fp32 .grad written; Linear 2's input grad: read grad_out, write grad_in
    linear1 = (h + w1 * FP32 + 2 * w1 * BF16) + (h + HID * FP32)
    linear2 = (y + w2 * FP32 + 2 * w2 * BF16) + (y + OUT * FP32) + (y + h)
    loss = y32 + (y32 + y)  # the fp32 logits' grad written; cast back to bf16: read, written
    assert t.gradients_bytes == linear1 + 2 * h + linear2 + loss


def test_no_bias_no_bias_bytes() -> None:
    t = mlp.traffic(mlp.MLP(IN, (HID,), OUT, bias=False), B, (IN,))
    assert t.forward.weights_bytes == (IN * HID + HID * OUT) * FP32


def test_two_linears_back_to_back_the_second_has_an_input_gradient() -> None:
    t = mlp.traffic(nn.Sequential(nn.Linear(IN, HID), nn.Linear(HID, OUT)), B, (IN,))
    assert t.backward.weights_bytes == HID * OUT * FP32  # Linear 2's grad @ W2 reads W2; Linear 1 has none
