"""bench.case.accounting (a case's figures per phase, analytic or counted) against hand counts and PyTorch itself.

The built-in case is ``Case(width=8, batch=4)``: Linear 8->8, ReLU, Linear 8->8, ReLU, Linear 8->8 (216
parameters), small enough to count each phase on paper with the documented conventions (2 FLOPs a multiply-add,
one FLOP a bias add and a bias-gradient sum per element, ReLU 1/1, cross-entropy 5/3 per logit, Adam 13 per
parameter, weight decay 2). The user's model is counted: its matmuls by FlopCounterMode run here, its bytes from
the real tensors' ``numel() * element_size()`` and a real optimiser's state.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mlp
from bench.case import accounting, plugin
from bench.case.accounting import COUNTED_NOTE, case_figures, columns
from bench.case.cases import Case

PHASES = ("step", "forward", "backward", "optimizer", "inference")
B, W = 4, 8
PARAMS = 3 * (W * W + W)  # 216
FP32 = 4


@pytest.fixture(autouse=True)
def _fresh_figures():
    """case_figures is cached per case: each test counts afresh (a mutant forked from a process that cached the
    unmutated figures would otherwise be read from that cache)."""
    accounting._case_figures.cache_clear()
    yield
    accounting._case_figures.cache_clear()


def test_the_built_in_case_is_the_net_counted_by_hand() -> None:
    model = Case(width=W, batch=B).build_model()
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert sum(p.numel() for p in model.parameters()) == PARAMS


@pytest.mark.parametrize("optimizer, decay, optimizer_flops", [
    ("adam", "", 13 * PARAMS),
    ("adam", "weight_decay=0.1", 13 * PARAMS + 2 * PARAMS),  # g += wd * p
    ("adamw", "weight_decay=0.1", 15 * PARAMS),  # AdamW's decoupled decay is in its own 15
    ("sgd", "weight_decay=0", 2 * PARAMS),
])
def test_analytic_flops_per_phase_by_hand(optimizer: str, decay: str, optimizer_flops: int) -> None:
    f = case_figures(Case(width=W, batch=B, loss="cross_entropy", optimizer=optimizer, optimizer_args=decay))
    assert f.source.value == "analytic" and f.parameters == PARAMS and f.note == ""
    forward_mm = 3 * 2 * B * W * W
    backward_mm = 2 * forward_mm - 2 * B * W * W  # no input gradient for the data
    assert f.matmul_flops == {"step": forward_mm + backward_mm, "forward": forward_mm, "backward": backward_mm,
                              "optimizer": 0, "inference": forward_mm}
    forward_ew = B * W * 3 + B * W * 2  # three bias adds, two ReLUs
    loss_forward, loss_backward = 5 * B * W, 3 * B * W
    backward_ew = loss_forward + loss_backward + B * W * 3 + B * W * 2  # the loss, bias-gradient sums, ReLU grads
    assert f.elementwise_flops == {"step": forward_ew + backward_ew + optimizer_flops, "forward": forward_ew,
                                   "backward": backward_ew, "optimizer": optimizer_flops, "inference": forward_ew}


def test_analytic_matmuls_are_what_flop_counter_counts() -> None:
    case = Case(width=W, batch=B)
    step = mlp.TrainStep(case.build_model())
    x, y = torch.randn(B, W), torch.randn(B, W)
    with FlopCounterMode(display=False) as whole:
        with FlopCounterMode(display=False) as forward:
            out = step.forward(x)
        step.loss_backward(out, y)
    f = case_figures(case)
    assert f.matmul_flops["forward"] == f.matmul_flops["inference"] == forward.get_total_flops()
    assert f.matmul_flops["step"] == whole.get_total_flops()


def test_analytic_bytes_per_phase_by_hand() -> None:
    f = case_figures(Case(width=W, batch=B, optimizer="sgd_momentum"))
    params = PARAMS * FP32
    data = B * W * FP32 * 2  # the batch and the mse target
    saved = B * W * 2 * FP32 + B * W * FP32  # two ReLU outputs, and mse_loss's input (the logits)
    assert f.memory["parameters_bytes"] == f.memory["gradients_bytes"] == f.memory["optimizer_state_bytes"] == params
    assert f.memory["saved_activations_bytes"] == saved and f.memory["data_bytes"] == data
    total = 3 * params + saved + data
    assert f.memory["total_bytes"] == f.needed_bytes == total
    persistent = 2 * params + data
    assert f.phase_peak_bytes["optimizer"] == persistent + params
    assert f.phase_peak_bytes["step"] == f.phase_peak_bytes["backward"] == total
    assert set(f.phase_peak_bytes) == set(PHASES)
    # the optimiser reads p, g and the momentum buffer, and writes p and the buffer: five parameter-sized passes
    assert f.traffic_bytes["optimizer"] == 5 * params
    assert f.traffic_bytes["step"] == f.traffic_bytes["forward"] + f.traffic_bytes["backward"] + 5 * params
    assert f.traffic_bytes["inference"] == f.traffic_bytes["forward"]
    # forward reads every weight and bias and the batch; each of its 5 operators writes its output, and the 4
    # after the first read their input (the first reads the batch)
    assert f.traffic_bytes["forward"] == params + B * W * FP32 + 5 * B * W * FP32 + 4 * B * W * FP32


def test_the_case_precision_and_its_parameter_dtype_reach_the_accounting() -> None:
    mixed = case_figures(Case(width=W, batch=B, dtype="bf16"))
    assert mixed.memory["cast_weights_bytes"] == 2 * W * W * 2  # the two later weights, in bf16
    assert mixed.memory["parameters_bytes"] == PARAMS * FP32
    pure = case_figures(Case(width=W, batch=B, dtype="bf16", param_dtype="compute"))
    assert pure.memory["parameters_bytes"] == PARAMS * 2 and pure.memory["cast_weights_bytes"] == 0
    assert pure.traffic_bytes["optimizer"] == 3 * PARAMS * 2  # sgd: read p and g, write p, each in bf16
    fused = case_figures(Case(width=W, batch=B, epilogue="fused"))
    plain = case_figures(Case(width=W, batch=B))
    # the fused Linear + ReLU writes no pre-activation and does not read it back: two layers' outputs less, twice
    assert plain.traffic_bytes["forward"] - fused.traffic_bytes["forward"] == 2 * 2 * B * W * FP32


def test_a_cross_entropy_case_on_cuda_saves_the_half_precision_log_softmax() -> None:
    cpu = case_figures(Case(width=W, batch=B, dtype="bf16", loss="cross_entropy"))
    cuda = case_figures(Case(width=W, batch=B, dtype="bf16", loss="cross_entropy", device="cuda"))
    assert cuda.memory["loss_saved_bytes"] - cpu.memory["loss_saved_bytes"] == B * W * 2
    # its backward reads that bf16 result (2 bytes a logit) where the CPU's reads the fp32 one (4)
    assert cpu.traffic_bytes["backward"] - cuda.traffic_bytes["backward"] == B * W * (4 - 2)


def test_the_gemms_of_a_case_are_its_steps_products() -> None:
    """Forward: three (B x W) @ (W x W)^T with bias; backward: the input gradient of the last two layers
    (B x W) @ (W x W), and the weight gradient of all three, (W x B) @ (B x W)."""
    gemms = case_figures(Case(width=W, batch=B)).gemms
    forward = [mlp.Gemm(m=B, k=W, n=W, trans_a=False, trans_b=True, bias=True)] * 3
    input_grad = [mlp.Gemm(m=B, k=W, n=W, trans_a=False, trans_b=False, bias=False)] * 2
    weight_grad = [mlp.Gemm(m=W, k=B, n=W, trans_a=True, trans_b=False, bias=False)] * 3
    assert sorted(gemms) == sorted(forward + input_grad + weight_grad)


# --------------------------------------------------------------------------- a user's model: counted


class Frozen(nn.Module):
    """Linear 6->5 (frozen), GELU, Linear 5->3: a user's module the accounting has no rule for."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)
        self.fc1.requires_grad_(False)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Masked(nn.Module):
    """A dict input: ``model(x=..., mask=...)``."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, mask):
        return self.fc(x * mask)


def masked_pair(batch, device, dtype):
    """The same input as a tuple: ``model(x, mask)``."""
    return torch.randn(batch, 6, device=device, dtype=dtype), torch.ones(batch, 6, device=device, dtype=dtype)


def masked_inputs(batch, device, dtype):
    return {"x": torch.randn(batch, 6, device=device, dtype=dtype),
            "mask": torch.ones(batch, 6, device=device, dtype=dtype)}


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_a_user_model_is_counted_from_its_tensors(loss: str) -> None:
    case = Case(model=plugin.register(Frozen), in_features=6, out_features=3, batch=B, loss=loss, optimizer="adam")
    f = case_figures(case)
    model = Frozen()
    x = torch.randn(B, 6)
    y = torch.randn(B, 3) if loss == "mse" else torch.randint(0, 3, (B,))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    with FlopCounterMode(display=False) as whole:
        with FlopCounterMode(display=False) as forward:
            out = model(x)
        mlp.make_loss(loss)(out, y).backward()
    optimizer.step()
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values())
    n = sum(p.numel() for p in model.parameters())
    assert (f.source.value, f.note, f.parameters) == ("counted", COUNTED_NOTE, n)
    assert f.matmul_flops == {"step": whole.get_total_flops(), "forward": forward.get_total_flops(),
                              "backward": whole.get_total_flops() - forward.get_total_flops(), "optimizer": 0,
                              "inference": forward.get_total_flops()}
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    assert grads == model.fc2.weight.nbytes + model.fc2.bias.nbytes  # the frozen layer has none
    known = {"parameters_bytes": params, "gradients_bytes": grads, "data_bytes": x.nbytes + y.nbytes}
    assert {k: f.memory[k] for k in known} == known
    # the optimiser state of every parameter (the accounting does not know which the user's optimiser skips):
    # Adam's two buffers and one fp32 step each, as the real optimiser holds for the trainable ones
    assert f.memory["optimizer_state_bytes"] == 2 * params + 4 * FP32
    assert state == 2 * grads + 2 * FP32
    unknown = set(mlp.Memory.__dataclass_fields__) - set(known) - {"optimizer_state_bytes"} | {"total_bytes"}
    assert all(math.isnan(f.memory[k]) for k in unknown)
    assert f.needed_bytes == params + grads + 2 * params + 4 * FP32 + x.nbytes + y.nbytes
    assert f.phase_peak_bytes["optimizer"] == f.needed_bytes
    assert all(math.isnan(f.phase_peak_bytes[p]) for p in PHASES if p != "optimizer")
    assert f.elementwise_flops["optimizer"] == 13 * n
    assert all(math.isnan(f.elementwise_flops[p]) for p in PHASES if p != "optimizer")
    assert f.described == {"model_linears": 2, "model_in_features": 6, "model_out_features": 3,
                           "model_input_shape": "6"}
    assert len(f.model_source_sha) == plugin.SHA_CHARS
    # what any step moves: the parameters and the batch forward, the gradients and the target backward
    assert f.traffic_bytes["forward"] == params + x.nbytes
    assert f.traffic_bytes["backward"] == params + y.nbytes
    assert f.traffic_bytes["optimizer"] == 7 * params  # Adam reads p, g, m, v and writes p, m, v
    assert f.traffic_bytes["step"] == 9 * params + x.nbytes + y.nbytes
    assert f.traffic_bytes["inference"] == f.traffic_bytes["forward"]


def test_a_user_models_weight_decay_is_counted() -> None:
    case = Case(model=plugin.register(Frozen), in_features=6, out_features=3, batch=B, optimizer="sgd",
                optimizer_args="weight_decay=0.01")
    n = sum(p.numel() for p in Frozen().parameters())
    assert case_figures(case).elementwise_flops["optimizer"] == 2 * n + 2 * n


@pytest.mark.parametrize("loss, target_bytes", [("cross_entropy", B * 8), ("mse", B * 3 * FP32)])  # int64 labels
def test_a_dict_input_is_counted_from_the_inputs_functions_tensors(loss: str, target_bytes: int) -> None:
    case = Case(model=plugin.register(Masked), inputs=plugin.register(masked_inputs), out_features=3, batch=B,
                loss=loss)
    f = case_figures(case)
    x = masked_inputs(B, "cpu", torch.float32)
    batch = sum(t.nbytes for t in x.values())
    assert f.memory["data_bytes"] == batch + target_bytes
    assert f.traffic_bytes["forward"] == (6 * 3 + 3) * FP32 + batch  # the two tensors of 6 features each
    assert f.described == {"model_linears": 1, "model_in_features": pytest.approx(math.nan, nan_ok=True),
                           "model_out_features": 3, "model_input_shape": "x=6;mask=6"}
    with FlopCounterMode(display=False) as forward:
        Masked()(**x)
    assert f.matmul_flops["forward"] == forward.get_total_flops() == 2 * B * 6 * 3
    assert f.matmul_flops["backward"] == 2 * B * 6 * 3  # the weight gradient only: the data needs none


def test_a_tuple_input_is_counted_from_each_of_its_tensors() -> None:
    f = case_figures(Case(model=plugin.register(Masked), inputs=plugin.register(masked_pair), out_features=3,
                          batch=B))
    batch = sum(t.nbytes for t in masked_pair(B, "cpu", torch.float32))
    assert f.memory["data_bytes"] == batch + B * 3 * FP32
    assert f.traffic_bytes["forward"] == (6 * 3 + 3) * FP32 + batch
    assert f.described["model_input_shape"] == "6;6"


# --------------------------------------------------------------------------- the summary row's columns


@pytest.mark.parametrize("phase", PHASES)
def test_columns_of_an_analytic_case(phase: str) -> None:
    f = case_figures(Case(width=W, batch=B))
    row = columns(f, phase)
    assert row["flops_source"] == "analytic"
    assert (row["matmul_flops"], row["elementwise_flops"], row["traffic_bytes"], row["mem_phase_peak_bytes"]) == (
        f.matmul_flops[phase], f.elementwise_flops[phase], f.traffic_bytes[phase], f.phase_peak_bytes[phase])
    assert row["parameters"] == PARAMS and row["mem_parameters_bytes"] == PARAMS * FP32
    assert {k for k in row if k.startswith("mem_")} == {f"mem_{k}" for k in mlp.Memory(*[0] * 6).as_dict()} | {
        "mem_phase_peak_bytes"}
    assert row["model_source_sha"] == "" and row["accounting_note"] == ""
    assert row["model_input_shape"] == ""
    assert all(math.isnan(row[k]) for k in ("model_linears", "model_in_features", "model_out_features"))


def test_columns_of_a_counted_case() -> None:
    f = case_figures(Case(model=plugin.register(Frozen), in_features=6, out_features=3, batch=B))
    row = columns(f, "optimizer")
    assert row["flops_source"] == "counted" and row["accounting_note"] == COUNTED_NOTE
    assert (row["model_linears"], row["model_in_features"], row["model_out_features"], row["model_input_shape"]) == (
        2, 6, 3, "6")
    assert row["elementwise_flops"] == 2 * sum(p.numel() for p in Frozen().parameters())
