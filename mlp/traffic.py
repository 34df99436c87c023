"""What one training step moves: the GEMMs it runs (shape and layout) and the bytes each phase reads and writes.

The FLOPs are in ``accounting``; this module is the other half of a roofline: which
matrix products the matmul ceiling must be measured on, and how many bytes a phase
must at least move through memory.

GEMMs, as autograd really calls them (``torch.nn.Linear`` on a 2-D batch):

* forward: ``addmm(bias, x, W.t())``: (batch, in) @ (in, out), the right operand transposed;
* input gradient: ``mm(grad, W)``: (batch, out) @ (out, in), both contiguous
  (skipped for the first layer: the data does not require grad);
* weight gradient: ``mm(grad.t(), x)``: (out, batch) @ (batch, in), the left operand transposed.

Bytes: every tensor an operator reads is read once and every tensor it writes is written
once (no cache reuse between operators, none of the re-reads inside a GEMM). That is the
least traffic an unfused eager step can have, so the bytes term of the speed of light is
a floor, as the FLOP term is. Per phase, by what the bytes are:

* ``weights``: parameters read (forward, input gradient), and under autocast their
  low-precision copies written and read;
* ``activations``: layer outputs written in forward and read by the next operator; in
  backward, the tensors autograd saved, read back (``saved_bytes`` of the total);
* ``gradients``: activation gradients written and read in backward, parameter gradients
  written in backward and read by the optimiser;
* ``optimizer_state``: parameters read and written, momentum / Adam moments read and written;
* ``data``: the input batch and the targets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import nn

from .accounting import FP32_BYTES, layers_of, plain_parameters, stored_sizes
from .activations import ACTIVATIONS
from .block_ops import has_dropout, trace
from .blocks import BlockNet
from .options import Loss, Optimizer, ParamDtype, Precision, parse_enum

OPTIMIZER_TENSOR_PASSES = {  # parameter-sized tensors (read, written) per parameter by one optimiser step
    Optimizer.SGD: (2, 1),  # read p, g; write p
    Optimizer.SGD_MOMENTUM: (3, 2),  # read p, g, buf; write p, buf
    Optimizer.ADAM: (4, 3),  # read p, g, exp_avg, exp_avg_sq; write p, exp_avg, exp_avg_sq
    Optimizer.ADAMW: (4, 3),
}
LABEL_BYTES = 8  # int64 class labels


# --------------------------------------------------------------------------- GEMMs


@dataclass(frozen=True, order=True)
class Gemm:
    """One matrix product (m, k) @ (k, n); ``trans_a``/``trans_b``: that operand is a transposed view."""

    m: int
    k: int
    n: int
    trans_a: bool = False
    trans_b: bool = False
    bias: bool = False  # addmm with a bias vector (the forward of a Linear with bias)

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def label(self) -> str:
        """``1024x512x512 nt`` (m x k x n, layout of a and b: n = contiguous, t = transposed view)."""
        layout = ("t" if self.trans_a else "n") + ("t" if self.trans_b else "n")
        return f"{self.m}x{self.k}x{self.n} {layout}" + (" +bias" if self.bias else "")


def square(n: int) -> Gemm:
    return Gemm(n, n, n)


def gemms(model: nn.Module, batch: int, input_requires_grad: bool = False) -> list[Gemm]:
    """Every matrix product of one training step of ``model`` (forward, then backward), in call order."""
    if isinstance(model, BlockNet):
        return [Gemm(*g) for g in trace(model, batch, input_requires_grad=input_requires_grad).gemms]
    linears = [layer for layer in layers_of(model) if layer.kind == "linear"]
    forward = [Gemm(batch, lin.in_features, lin.out_features, trans_b=True, bias=lin.bias) for lin in linears]
    backward = []
    for i, lin in reversed(list(enumerate(linears))):
        if i > 0 or input_requires_grad:
            backward.append(Gemm(batch, lin.out_features, lin.in_features))  # grad @ W
        backward.append(Gemm(lin.out_features, batch, lin.in_features, trans_a=True))  # grad.t() @ x
    return forward + backward


# --------------------------------------------------------------------------- bytes


@dataclass(frozen=True)
class Traffic:
    """Bytes one phase must move through memory, by kind (see the module docstring)."""

    weights_bytes: int = 0
    activations_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_state_bytes: int = 0
    data_bytes: int = 0
    saved_bytes: int = 0  # part of the total: what backward reads back of the tensors autograd saved

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.activations_bytes + self.gradients_bytes + self.optimizer_state_bytes
                + self.data_bytes)

    def __add__(self, other: "Traffic") -> "Traffic":
        return Traffic(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}


@dataclass(frozen=True)
class StepTraffic:
    forward: Traffic
    backward: Traffic  # loss + backward
    optimizer: Traffic

    @property
    def step(self) -> Traffic:
        return self.forward + self.backward + self.optimizer

    eval_forward: Traffic | None = None  # the forward in eval mode where it differs (dropout): the inference phase

    @property
    def inference(self) -> Traffic:
        # the forward's reads and writes (in eval mode); nothing is kept for backward (not a traffic term)
        return self.eval_forward if self.eval_forward is not None else self.forward

    def phase(self, name: str) -> Traffic:
        return getattr(self, name)


def traffic(model: nn.Module, batch: int, input_shape: tuple[int, ...], loss: Loss | str = Loss.MSE,
            optimizer: Optimizer | str = Optimizer.SGD, precision: Precision | str = Precision.FP32,
            device: str = "cpu", param_dtype: ParamDtype | str = ParamDtype.FP32,
            fused_epilogue: bool = False) -> StepTraffic:
    """Least bytes each phase of one training step moves (each operand read once, each result written once).

    ``device`` matters for the blocks (``mlp.block_ops``: dropout's mask, the norms under autocast) and for
    cross-entropy under CUDA autocast (``mlp.memory``).
    ``param_dtype`` ``COMPUTE``: parameters, their gradients, the optimiser's tensors and the batch move in
    the compute dtype and nothing is cast (``accounting.stored_sizes``); the loss still reads an fp32 copy.
    ``fused_epilogue``: a ReLU after a Linear costs no forward bytes (cuBLASLt writes the activated output;
    on the CPU, ``_addmm_activation`` still reads and writes it in place, so there the floor reads low).
    """
    loss = parse_enum(Loss, loss, "loss")
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    precision = parse_enum(Precision, precision, "dtype")
    act, autocast, pure = stored_sizes(precision, parse_enum(ParamDtype, param_dtype, "param_dtype"))
    plain_parameters(model, pure, fused_epilogue)
    cuda = str(device).startswith("cuda")
    if isinstance(model, BlockNet):
        return _block_traffic(model, batch, loss, optimizer, act, autocast, cuda)
    param_size = act if pure else FP32_BYTES  # the parameters, their gradients and their optimiser state
    layers = layers_of(model)
    data_elems = batch * math.prod(input_shape)
    data_bytes = data_elems * (act if pure else FP32_BYTES)
    # (batch, in) -> ... -> (batch, out): the first operator reads the fp32 batch, or its cast copy under autocast
    fwd = _Tally(data=data_bytes, activations=data_elems * act if autocast else 0)
    bwd = _Tally()
    for i, layer in enumerate(layers):
        x_bytes = batch * layer.in_features * act  # this operator's input
        y_bytes = batch * layer.out_features * act  # ... and output
        input_is_data = i == 0 and not autocast
        # with a fused epilogue the matmul wrote the activated output: the ReLU reads and writes nothing in forward
        fused = fused_epilogue and layer.kind == "relu" and i > 0 and layers[i - 1].kind == "linear"
        fwd.activations += 0 if fused else (0 if input_is_data else x_bytes) + y_bytes
        if layer.kind == "linear":
            w_elems = layer.in_features * layer.out_features
            b_elems = layer.out_features if layer.bias else 0
            fwd.weights += (w_elems + b_elems) * param_size + (2 * (w_elems + b_elems) * act if autocast else 0)
            # weight gradient: grad_out.t() @ saved input -> dW (fp32 .grad; under autocast via a cast copy)
            bwd.read_saved("data" if input_is_data else "activations", data_bytes if input_is_data else x_bytes)
            bwd.gradients += y_bytes + w_elems * param_size + (2 * w_elems * act if autocast else 0)
            if layer.bias:
                bwd.gradients += y_bytes + b_elems * param_size  # sum of grad_out over the batch
            if i > 0:  # input gradient: grad_out @ saved W (the parameter, or its cast copy) -> grad_in
                bwd.read_saved("weights", w_elems * act)
                bwd.gradients += y_bytes + x_bytes
        elif ACTIVATIONS[layer.kind].name != "identity":
            bwd.read_saved("activations", y_bytes)  # its saved input or output
            bwd.gradients += 2 * y_bytes  # read grad_out, write grad_in
    out = layers[-1].out_features
    loss_cast = autocast or pure  # the loss runs in fp32 on a cast copy (autocast's, or TrainStep's out.float())
    _loss_traffic(bwd, batch * out * act, batch * out, batch, loss, loss_cast, cast=loss_cast, cuda=cuda and autocast)
    return StepTraffic(fwd.traffic(), bwd.traffic(), _optimizer_traffic(model, optimizer, param_size))


def _block_traffic(model: BlockNet, batch: int, loss: Loss, optimizer: Optimizer, act: int, autocast: bool,
                   cuda: bool) -> StepTraffic:
    t = trace(model, batch, act, autocast, cuda)
    bwd = _Tally(data=t.bwd.data, activations=t.bwd.activations)
    bwd.weights, bwd.gradients, bwd.saved = t.bwd.weights, t.bwd.gradients, t.bwd.saved
    _loss_traffic(bwd, t.output.nbytes, t.output.rows * t.output.cols, batch, loss, autocast,
                  cast=autocast and t.output.size != FP32_BYTES, cuda=cuda)
    eval_forward = _forward_traffic(trace(model, batch, act, autocast, cuda, training=False)) \
        if has_dropout(model) else None
    return StepTraffic(_forward_traffic(t), bwd.traffic(), _optimizer_traffic(model, optimizer, FP32_BYTES),
                       eval_forward)


def _forward_traffic(t) -> Traffic:
    fwd = _Tally(data=t.fwd.data, activations=t.fwd.activations)
    fwd.weights = t.fwd.weights
    return fwd.traffic()


def _loss_traffic(bwd: "_Tally", logits_act: int, out_elems: int, batch: int, loss: Loss, autocast: bool,
                  cast: bool, cuda: bool) -> None:
    """The loss's forward and backward (timed with backward): read the logits and the target, write their grad."""
    logits_loss = out_elems * FP32_BYTES if autocast else logits_act  # autocast runs the loss in fp32
    target_bytes = out_elems * FP32_BYTES if loss is Loss.MSE else batch * LABEL_BYTES
    bwd.activations += logits_act + (logits_act + logits_loss if cast else 0)
    bwd.data += target_bytes
    if loss is Loss.MSE:  # mse_loss saves its input and the target
        bwd.read_saved("activations", logits_loss)
    else:  # log_softmax saves its result, nll_loss its input (the same tensor), the target and total_weight
        # (on CUDA under autocast, log_softmax runs in half precision and nll_loss saves an fp32 copy of its result)
        bwd.read_saved("activations", (logits_act if cuda and cast else logits_loss) + logits_loss + FP32_BYTES)
    bwd.read_saved("data", target_bytes)
    bwd.gradients += logits_loss + (logits_loss + logits_act if cast else 0)  # write grad of the logits


class _Tally:
    def __init__(self, data: int = 0, activations: int = 0):
        self.weights, self.activations, self.gradients, self.data, self.saved = 0, activations, 0, data, 0

    def read_saved(self, kind: str, nbytes: int) -> None:
        setattr(self, kind, getattr(self, kind) + nbytes)
        self.saved += nbytes

    def traffic(self) -> Traffic:
        return Traffic(weights_bytes=self.weights, activations_bytes=self.activations,
                       gradients_bytes=self.gradients, data_bytes=self.data, saved_bytes=self.saved)


def _optimizer_traffic(model: nn.Module, optimizer: Optimizer, element_size: int) -> Traffic:
    reads, writes = OPTIMIZER_TENSOR_PASSES[optimizer]
    param_bytes = sum(p.numel() * element_size for p in model.parameters())
    state = (reads - 2 + writes - 1) * param_bytes  # the state tensors' reads and writes
    return Traffic(gradients_bytes=param_bytes, optimizer_state_bytes=2 * param_bytes + state)


def known_traffic(model: nn.Module, batch: int, input_shape: tuple[int, ...], out_features: int,
                  loss: Loss | str = Loss.MSE, optimizer: Optimizer | str = Optimizer.SGD) -> StepTraffic:
    """What any module's step must move, from its parameters and the batch alone (a lower bound of ``traffic``).

    For a module this file has no rule for: forward reads every parameter and the batch, loss + backward
    reads the target and writes every parameter gradient, the optimiser is exact (it only touches
    parameters, gradients and its state). Activations, their gradients and autocast's copies are left out:
    they depend on what the module computes, and are not guessed.
    """
    loss = parse_enum(Loss, loss, "loss")
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    data_bytes = batch * math.prod(input_shape) * FP32_BYTES
    target_bytes = batch * out_features * FP32_BYTES if loss is Loss.MSE else batch * LABEL_BYTES
    return StepTraffic(Traffic(weights_bytes=param_bytes, data_bytes=data_bytes),
                       Traffic(gradients_bytes=param_bytes, data_bytes=target_bytes),
                       _optimizer_traffic(model, optimizer, FP32_BYTES))
