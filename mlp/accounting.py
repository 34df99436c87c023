"""Exact FLOP and memory accounting for an MLP training step, from the architecture alone.

Matmul FLOPs follow the convention of ``torch.utils.flop_counter.FlopCounterMode``
(2·m·n·k per matmul, bias add not included) and must equal it exactly; the
tests check that. Elementwise work (bias adds, activations, loss, optimiser
update) is *not* in FlopCounterMode's total; we count it separately with a
documented per-element convention and label it as such. MFU uses matmul FLOPs.

Two details that naive counts get wrong:

* Backward is not 2× forward: autograd skips the first layer's input-gradient
  matmul when the input does not require grad (it never does for data).
* Saved activations depend on the activation: ReLU/sigmoid/tanh save their
  output (the same tensor the next Linear saves as its input), GELU/SiLU/...
  save their input too, so they keep two tensors per hidden layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .activations import ACTIVATIONS, ActivationSpec
from .block_ops import Trace, has_dropout, trace
from .blocks import BlockNet
from .options import Loss, Optimizer, ParamDtype, Precision, parse_enum

FP32_BYTES = 4

# Per-element FLOP conventions for the non-matmul work (see module docstring).
LOSS_FLOPS_PER_ELEMENT = {  # (forward, backward)
    Loss.MSE: (3, 3),  # diff, square, sum | diff, scale, scale
    Loss.CROSS_ENTROPY: (5, 3),  # max, sub, exp, sum, log-sub | softmax - onehot, scale
}
OPTIMIZER_FLOPS_PER_PARAM = {
    Optimizer.SGD: 2,  # p -= lr * g
    Optimizer.SGD_MOMENTUM: 4,  # b = m*b + g; p -= lr * b
    Optimizer.ADAM: 13,  # two moment updates, bias corrections, sqrt, div, update
    Optimizer.ADAMW: 15,  # Adam plus decoupled weight decay
}
OPTIMIZER_STATE_TENSORS = {  # parameter-sized state tensors per parameter, plus a scalar step?
    Optimizer.SGD: (0, False),
    Optimizer.SGD_MOMENTUM: (1, False),  # momentum_buffer
    Optimizer.ADAM: (2, True),  # exp_avg, exp_avg_sq, step
    Optimizer.ADAMW: (2, True),
}


@dataclass(frozen=True)
class Layer:
    """One layer of a sequential MLP: a Linear (``in_features``, ``out_features``) or an activation."""

    kind: str  # "linear" or an activation name
    in_features: int
    out_features: int
    bias: bool = False


def layers_of(model: nn.Module) -> list[Layer]:
    """The layer list of a sequential MLP (Flatten, Linear and activation modules only).

    For a ``BlockNet`` (branches, norms, dropout), its Linears and activations in call order: enough to
    count its ops, not to account for it (``flops``, ``memory`` and ``traffic`` trace it op by op instead).
    """
    if isinstance(model, BlockNet):
        return _block_layers(model)
    layers: list[Layer] = []
    width = None
    for module in model.children():
        if isinstance(module, nn.Flatten):
            continue
        if isinstance(module, nn.Linear):
            layers.append(Layer("linear", module.in_features, module.out_features, module.bias is not None))
            width = module.out_features
        else:
            if width is None:
                raise ValueError(f"activation {module!r} before the first Linear is not supported")
            layers.append(Layer(_spec_of(module).name, width, width))
    if not layers or layers[0].kind != "linear":
        raise ValueError("model has no Linear layer")
    return layers


def _block_layers(net: BlockNet) -> list[Layer]:
    layers = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            layers.append(Layer("linear", module.in_features, module.out_features, module.bias is not None))
            if name.endswith((".fc_in", ".w1")):  # the activation (SwiGLU: the SiLU gate) follows it
                layers.append(Layer(net.activation, net.hidden, net.hidden))
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.Dropout)):
            layers.append(Layer(type(module).__name__.lower(), net.width, net.width))
    return layers


def _spec_of(module: nn.Module) -> ActivationSpec:
    for spec in ACTIVATIONS.values():
        probe = spec.factory()
        if type(probe) is type(module) and probe.extra_repr() == module.extra_repr():
            return spec
    raise ValueError(f"no accounting for module {module!r}")


# --------------------------------------------------------------------------- FLOPs


@dataclass(frozen=True)
class Flops:
    """FLOPs of one training step, per phase. ``*_matmul`` are exact; ``*_elementwise`` are conventions."""

    forward_matmul: int
    backward_matmul: int
    forward_elementwise: int
    backward_elementwise: int  # loss backward, activation backward, bias-grad reductions
    loss_elementwise: int  # loss forward
    optimizer_elementwise: int

    @property
    def step_matmul(self) -> int:
        return self.forward_matmul + self.backward_matmul

    @property
    def step_elementwise(self) -> int:
        return self.forward_elementwise + self.loss_elementwise + self.backward_elementwise + self.optimizer_elementwise

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "step_matmul": self.step_matmul, "step_elementwise": self.step_elementwise}


def flops(model: nn.Module, batch: int, loss: Loss | str = Loss.MSE, optimizer: Optimizer | str = Optimizer.SGD,
          input_requires_grad: bool = False) -> Flops:
    """FLOPs of one training step of ``model`` on a batch of ``batch`` examples."""
    _check_batch(batch)
    loss = parse_enum(Loss, loss, "loss")
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    if isinstance(model, BlockNet):
        return _block_flops(model, trace(model, batch, input_requires_grad=input_requires_grad), loss, optimizer)
    fwd_mm = bwd_mm = fwd_ew = bwd_ew = 0
    first_linear = True
    for layer in layers_of(model):
        if layer.kind == "linear":
            mm = 2 * batch * layer.in_features * layer.out_features
            fwd_mm += mm
            bwd_mm += mm  # weight gradient: x^T @ grad_out
            if not first_linear or input_requires_grad:
                bwd_mm += mm  # input gradient: grad_out @ W
            if layer.bias:
                fwd_ew += batch * layer.out_features  # bias add (not counted by FlopCounterMode)
                bwd_ew += batch * layer.out_features  # bias grad: sum over the batch
            first_linear = False
        else:
            spec = ACTIVATIONS[layer.kind]
            fwd_ew += batch * layer.out_features * spec.forward_flops_per_element
            bwd_ew += batch * layer.out_features * spec.backward_flops_per_element
    out_features = _out_features(model)
    loss_fwd, loss_bwd = LOSS_FLOPS_PER_ELEMENT[loss]
    n_params = sum(p.numel() for p in model.parameters())
    return Flops(
        forward_matmul=fwd_mm,
        backward_matmul=bwd_mm,
        forward_elementwise=fwd_ew,
        backward_elementwise=bwd_ew + batch * out_features * loss_bwd,
        loss_elementwise=batch * out_features * loss_fwd,
        optimizer_elementwise=n_params * OPTIMIZER_FLOPS_PER_PARAM[optimizer],
    )


def _block_flops(model: nn.Module, t: Trace, loss: Loss, optimizer: Optimizer) -> Flops:
    out_elems = t.batch * _out_features(model)
    loss_fwd, loss_bwd = LOSS_FLOPS_PER_ELEMENT[loss]
    return Flops(
        forward_matmul=t.forward_matmul,
        backward_matmul=t.backward_matmul,
        forward_elementwise=t.forward_elementwise,
        backward_elementwise=t.backward_elementwise + out_elems * loss_bwd,
        loss_elementwise=out_elems * loss_fwd,
        optimizer_elementwise=sum(p.numel() for p in model.parameters()) * OPTIMIZER_FLOPS_PER_PARAM[optimizer],
    )


def inference_flops(model: nn.Module, batch: int) -> int:
    """Matmul FLOPs of one forward pass (the same as the training forward)."""
    return flops(model, batch).forward_matmul


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Memory:
    """Bytes held by one training step of an MLP (fp32 master weights; mixed precision via autocast).

    ``saved_activations_bytes`` is what autograd keeps between forward and
    backward, excluding the input batch and target (``data_bytes``) and the
    parameters themselves; under autocast it includes the low-precision copies
    of the weights that the matmuls save (``cast_weights_bytes`` of it).
    """

    parameters_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    saved_activations_bytes: int
    cast_weights_bytes: int
    data_bytes: int
    loss_saved_bytes: int = 0  # of saved_activations_bytes: what the loss saves (built in loss_backward)
    unsaved_output_bytes: int = 0  # the model's output where no layer saves it (the loss, if anything, does)
    autocast_cache_bytes: int = 0  # autocast's cached casts no matmul saves: the first weight, every bias
    widest_pair_bytes: int = 0  # inference: the largest input + output (+ casts) of one layer, the batch excluded

    @property
    def total_bytes(self) -> int:
        """Everything alive at the end of forward, before backward starts freeing."""
        return (self.parameters_bytes + self.gradients_bytes + self.optimizer_state_bytes
                + self.saved_activations_bytes + self.data_bytes)

    @property
    def persistent_bytes(self) -> int:
        """What lives between steps: parameters, optimiser state and one batch (gradients are set to None)."""
        return self.parameters_bytes + self.optimizer_state_bytes + self.data_bytes

    def phase_peak_bytes(self) -> dict[str, int]:
        """The analytic peak of each phase of ``TrainStep`` (``zero_grad(set_to_none=True)`` each step).

        - forward: the persistent bytes, the saved activations less the loss's (it runs in the
          backward phase), the output, and autocast's cache (freed when the forward's autocast exits);
        - backward (and the whole step): ``total_bytes``, the live set at the end of the forward with
          every gradient. Not a model of its peak: the loss's and the input gradients' transients are not
          counted, and gradients grow while saved tensors are freed (measured 0.86-1.98 times this);
        - optimizer: the persistent bytes and the gradients;
        - inference: the persistent bytes and the widest layer's input and output (under autocast, with
          that layer's cast weight and bias, and the cast batch as the first layer's input).

        Checked against the CUDA peaks of the first H100 run (results/reference/h100) for the eager cases,
        once the engine's own allocations are taken off (tests/mlp/test_memory_h100.py).
        """
        forward = (self.persistent_bytes + self.saved_activations_bytes - self.loss_saved_bytes
                   + self.unsaved_output_bytes + self.autocast_cache_bytes)
        return {"forward": forward, "backward": self.total_bytes, "step": self.total_bytes,
                "optimizer": self.persistent_bytes + self.gradients_bytes,
                "inference": self.persistent_bytes + self.widest_pair_bytes}

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def optimizer_state_bytes(model: nn.Module, optimizer: Optimizer | str, element_size: int | None = None) -> int:
    """Optimiser state after the first step: parameter-sized buffers plus Adam's scalar ``step`` tensors.

    ``element_size``: the parameters' bytes per element when they are stored in another dtype than the
    model's (``ParamDtype.COMPUTE``: the buffers follow the parameters' dtype; ``step`` stays fp32).
    """
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    buffers, has_step = OPTIMIZER_STATE_TENSORS[optimizer]
    params = list(model.parameters())
    total = sum(buffers * p.numel() * (element_size or p.element_size()) for p in params)
    if has_step:
        total += len(params) * FP32_BYTES  # step is a float32 0-dim tensor per parameter
    return total


def stored_sizes(precision: Precision, param_dtype: ParamDtype) -> tuple[int, bool, bool]:
    """(bytes per activation element, autocast casts weights and batch, parameters and batch live in the compute dtype).

    ``ParamDtype.COMPUTE`` under a reduced precision: parameters, gradients, optimiser state and the input
    batch are stored in the compute dtype, nothing is cast per step, and the loss still runs in fp32 on an
    fp32 copy of the logits (as autocast runs it). With fp32/tf32 there is nothing to cast either way.
    """
    act_size = torch.empty((), dtype=precision.compute_dtype).element_size()
    pure = param_dtype is ParamDtype.COMPUTE and precision.autocast_dtype is not None
    return act_size, precision.autocast_dtype is not None and not pure, pure


def plain_parameters(model: nn.Module, pure: bool, fused_epilogue: bool = False) -> None:
    """The block nets are accounted with fp32 parameters and no fused epilogue (``mlp.block_ops``)."""
    if isinstance(model, BlockNet) and (pure or fused_epilogue):
        raise ValueError("param_dtype 'compute' and the fused epilogue are accounted for the uniform, teaching "
                         "and FashionMNIST nets only, not for the block nets")


def memory(model: nn.Module, batch: int, input_shape: tuple[int, ...], loss: Loss | str = Loss.MSE,
           optimizer: Optimizer | str = Optimizer.SGD, precision: Precision | str = Precision.FP32,
           device: str = "cpu", param_dtype: ParamDtype | str = ParamDtype.FP32) -> Memory:
    """Analytic memory of one training step; ``input_shape`` excludes the batch dimension.

    ``device`` matters for the blocks (``mlp.block_ops``: dropout's mask, the norms under autocast) and for
    cross-entropy under CUDA autocast (log_softmax's half-precision result is saved beside nll_loss's fp32 copy).
    ``param_dtype`` (``ParamDtype.COMPUTE``): the parameters, gradients, optimiser state and batch in the
    compute dtype, no cast copies (``stored_sizes``); ``model`` may be built in fp32 (on the meta device).
    """
    _check_batch(batch)
    loss = parse_enum(Loss, loss, "loss")
    precision = parse_enum(Precision, precision, "dtype")
    act_size, autocast, pure = stored_sizes(precision, parse_enum(ParamDtype, param_dtype, "param_dtype"))
    params = list(model.parameters())
    plain_parameters(model, pure)
    if isinstance(model, BlockNet):
        cuda = str(device).startswith("cuda")
        t = trace(model, batch, act_size, autocast, cuda)
        live = trace(model, batch, act_size, autocast, cuda, training=False) if has_dropout(model) else t
        return _block_memory(model, t, input_shape, loss, optimizer, live.live_peak_bytes)
    param_size = (lambda p: act_size) if pure else (lambda p: p.element_size())  # noqa: E731
    param_bytes = sum(p.numel() * param_size(p) for p in params)

    saved = cast_weights = cache = widest = 0
    layers = layers_of(model)
    previous = 0  # the input of the layer in hand, in bytes (0 for the batch: it is data)
    for i, layer in enumerate(layers):
        out_bytes = batch * layer.out_features * act_size
        cast = autocast and layer.kind == "linear"  # this layer's weight and bias are cast to the compute dtype
        weight_cast = layer.in_features * layer.out_features * act_size if cast else 0
        bias_cast = layer.out_features * act_size if cast and layer.bias else 0
        if autocast and i == 0:  # the first layer (a Linear) reads the cast batch
            previous = batch * layer.in_features * act_size
        # inference: one layer's input, output and casts at a time (inference mode caches no cast)
        widest = max(widest, previous + out_bytes + weight_cast + bias_cast)
        previous = out_bytes
        if layer.kind == "linear":
            cache += bias_cast  # autocast caches every cast bias, and the first weight (no matmul saves it)
            if i == 0:
                if autocast:  # the batch is cast to the compute dtype; the matmul saves the copy
                    saved += batch * layer.in_features * act_size
                    cache += weight_cast
            else:  # the matmul saves the cast weight for its input gradient
                cast_weights += weight_cast
            continue
        spec = ACTIVATIONS[layer.kind]
        n = batch * layer.out_features * act_size
        # The output of every activation is saved once: by the next Linear (as its input),
        # by the loss, or by the activation itself, and these are the same tensor.
        saved += n
        if spec.saves_input and spec.name != "identity":
            saved += n
    # the loss runs in fp32 under autocast and on TrainStep's out.float() for compute-dtype parameters; only
    # autocast's CUDA log_softmax stays in half precision
    loss_saved = _loss_saved_bytes(layers, batch, loss, act_size, autocast or pure,
                                   cuda=str(device).startswith("cuda") and autocast)
    saved += loss_saved
    ends_in_activation = layers[-1].kind != "linear"
    data_elems = batch * math.prod(input_shape)
    out_features = _out_features(model)
    target_bytes = batch * (out_features * FP32_BYTES if loss is Loss.MSE else 8)  # int64 labels
    return Memory(
        parameters_bytes=param_bytes,
        gradients_bytes=sum(p.numel() * param_size(p) for p in params if p.requires_grad),
        optimizer_state_bytes=optimizer_state_bytes(model, optimizer, act_size if pure else None),
        saved_activations_bytes=saved + cast_weights,
        cast_weights_bytes=cast_weights,
        data_bytes=data_elems * (act_size if pure else FP32_BYTES) + target_bytes,
        loss_saved_bytes=loss_saved,
        unsaved_output_bytes=0 if ends_in_activation else batch * out_features * act_size,
        autocast_cache_bytes=cache,
        widest_pair_bytes=widest,
    )


def _block_memory(model: nn.Module, t: Trace, input_shape: tuple[int, ...], loss: Loss,
                  optimizer: Optimizer, inference_live_bytes: int) -> Memory:
    """``inference_live_bytes``: the inference phase's live set, traced in eval mode (no dropout)."""
    out = t.output
    saved_by_model = out.id in t.saved
    if loss is Loss.MSE:  # mse_loss saves its input: an fp32 copy under autocast unless already fp32
        cast = t.autocast and out.size != FP32_BYTES
        loss_saved = out.rows * out.cols * FP32_BYTES if cast else (0 if saved_by_model else out.nbytes)
    else:  # log_softmax saves its result (fp32 under autocast), nll_loss its total_weight
        size = FP32_BYTES if t.autocast else t.act_size
        loss_saved = out.rows * out.cols * size + size
        if t.cuda and t.autocast and out.size != FP32_BYTES:
            loss_saved += out.nbytes  # CUDA: log_softmax's half-precision result, beside nll_loss's fp32 copy
    params = list(model.parameters())
    out_features = _out_features(model)
    target_bytes = t.batch * (out_features * FP32_BYTES if loss is Loss.MSE else 8)  # int64 labels
    return Memory(
        parameters_bytes=sum(p.numel() * p.element_size() for p in params),
        gradients_bytes=sum(p.numel() * p.element_size() for p in params if p.requires_grad),
        optimizer_state_bytes=optimizer_state_bytes(model, optimizer),
        saved_activations_bytes=t.saved_activations_bytes + loss_saved + t.cast_weights_bytes,
        cast_weights_bytes=t.cast_weights_bytes,
        data_bytes=t.batch * math.prod(input_shape) * FP32_BYTES + target_bytes,
        loss_saved_bytes=loss_saved,
        unsaved_output_bytes=0 if saved_by_model else out.nbytes,
        autocast_cache_bytes=t.autocast_cache_bytes,
        widest_pair_bytes=inference_live_bytes,
    )


def _loss_saved_bytes(layers: list[Layer], batch: int, loss: Loss, act_size: int, autocast: bool,
                      cuda: bool = False) -> int:
    out = layers[-1].out_features
    ends_in_activation = layers[-1].kind != "linear"
    if cuda and autocast and loss is Loss.CROSS_ENTROPY:
        # CUDA autocast runs log_softmax in half precision (it saves that result) and nll_loss in fp32 (it saves
        # its fp32 copy of it, and total_weight)
        return batch * out * (act_size + FP32_BYTES) + FP32_BYTES
    if loss is Loss.MSE:
        # mse_loss saves its input (the logits); autocast runs it in fp32, so a cast copy is saved.
        if autocast:
            return batch * out * FP32_BYTES
        return 0 if ends_in_activation else batch * out * act_size
    # cross_entropy = log_softmax (saves its fp32 result under autocast) + nll_loss (saves total_weight).
    log_softmax_size = FP32_BYTES if autocast else act_size
    return batch * out * log_softmax_size + log_softmax_size


def _out_features(model: nn.Module) -> int:
    if isinstance(model, BlockNet):
        return model.out_features
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def _check_batch(batch: int) -> None:
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
