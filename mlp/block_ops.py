"""The ops of one training step of a ``BlockNet``, as data: shapes, dtypes and what autograd keeps.

``trace(net, batch, precision, device)`` walks the net's forward symbolically, op by op, with the
rules of eager PyTorch (checked by tests/mlp/test_blocks.py against FlopCounterMode, saved-tensor
hooks and dispatched GEMMs on the CPU), and tallies what ``mlp.accounting`` and ``mlp.traffic``
report: matmul FLOPs (exact), elementwise FLOPs (conventions), the distinct tensors autograd
saves, autocast's cast copies, the GEMMs, the bytes each phase moves and the inference live set.

Rules per op (``x`` its input; a tensor of the input batch is data, not a saved activation):

* ``linear``: autocast casts an fp32 input to the compute dtype (a new copy per Linear: autocast
  caches only the casts of parameters) and the weight and bias (cached). Saves its (cast) input,
  and the weight (or its cast) only when ``x`` requires grad; the input gradient is skipped when
  it does not.
* activations: their input (``saves_input``) and/or output (``saves_output``), ``mlp.activations``.
* ``mul`` (SwiGLU's gate): saves each operand for the other's gradient. ``add`` (the residual):
  saves nothing; an fp32 and a bf16 operand make an fp32 sum (type promotion).
* ``dropout`` (p > 0, train mode; ``trace(training=False)`` is the inference phase's eval mode, where it is the
  identity): on CUDA ``native_dropout`` saves a bool mask (1 byte/element);
  on the CPU it draws a noise tensor of the input's dtype and saves it (``x * noise``).
* ``layernorm``: saves its input, mean and rstd (fp32, one per row). On CUDA, autocast runs it in
  fp32 (a cast copy of a bf16 input, saved, and an fp32 output); on the CPU it keeps the input dtype.
* ``rmsnorm``: on the CPU torch composes it (``x * rsqrt(mean(x²) + eps) * w`` in fp32): it saves
  the fp32 input (a copy of a bf16 one) and rstd when the input requires grad, and the normalised
  fp32 tensor (for the weight's gradient); the output keeps the input dtype. On CUDA, autocast
  runs it in fp32 and the fused kernel saves its (fp32) input and rstd.

The CUDA rules are from torch's sources (autocast's fp32 list, ``native_dropout``,
``_fused_rms_norm``) and checked on fake CUDA tensors (tests/mlp/test_cuda_rules.py), not on a GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from torch import nn

from .activations import ACTIVATIONS
from .blocks import BlockNet, FeedForward, PreNormResidual, SwiGLU

FP32_BYTES = 4
BOOL_BYTES = 1
# Per-element FLOP conventions of the blocks' non-matmul ops (forward, backward); see mlp.accounting.
NORM_FLOPS_PER_ELEMENT = {  # before the affine weight (+1 / +2: scale, and its gradient) and bias (+1 / +1)
    "layernorm": (4, 6),  # mean, sub, square-sum, scale | the three-term input gradient
    "rmsnorm": (3, 5),  # square-sum, scale | the two-term input gradient
}
DROPOUT_FLOPS_PER_ELEMENT = (2, 1)  # draw and scale | grad * mask
MUL_FLOPS_PER_ELEMENT = (1, 2)  # a * b | grad * b, grad * a
ADD_FLOPS_PER_ELEMENT = (1, 1)  # x + f | the gradients of the two branches summed at the fork


@dataclass(frozen=True)
class Traced:
    """A tensor of the trace: ``rows x cols`` elements of ``size`` bytes."""

    id: int
    rows: int
    cols: int
    size: int
    grad: bool  # requires grad
    data: bool = False  # the input batch (data_bytes, never a saved activation)

    @property
    def nbytes(self) -> int:
        return self.rows * self.cols * self.size


@dataclass
class PhaseBytes:
    weights: int = 0
    activations: int = 0
    gradients: int = 0
    data: int = 0
    saved: int = 0  # of the above: saved tensors read back in backward

    def read(self, t: Traced) -> None:
        if t.data:
            self.data += t.nbytes
        else:
            self.activations += t.nbytes

    def read_saved(self, t: Traced | None, nbytes: int | None = None, weight: bool = False) -> None:
        n = t.nbytes if nbytes is None else nbytes
        if weight:
            self.weights += n
        elif t is not None and t.data:
            self.data += n
        else:
            self.activations += n
        self.saved += n


@dataclass
class Trace:
    """The tallies of one training step of a BlockNet (see the module docstring)."""

    batch: int
    act_size: int  # bytes of the compute dtype
    autocast: bool
    cuda: bool
    training: bool = True  # False: eval mode (the inference phase): dropout is the identity
    forward_matmul: int = 0
    backward_matmul: int = 0
    forward_elementwise: int = 0
    backward_elementwise: int = 0
    saved: dict[int, int] = field(default_factory=dict)  # distinct saved activations: id -> bytes
    cast_weights_bytes: int = 0  # saved cast weights (autocast)
    autocast_cache_bytes: int = 0  # cached casts no op saves (weights of a first Linear, every bias)
    forward_gemms: list[tuple] = field(default_factory=list)  # (m, k, n, trans_a, trans_b, bias)
    backward_gemms: list[list[tuple]] = field(default_factory=list)  # per op, reversed at the end
    fwd: PhaseBytes = field(default_factory=PhaseBytes)
    bwd: PhaseBytes = field(default_factory=PhaseBytes)
    live_peak_bytes: int = 0  # inference: the most intermediate bytes alive at once, the batch excluded
    output: Traced | None = None
    pinned: list[Traced] = field(default_factory=list)  # held by an enclosing frame (a block's input)
    _ids: itertools.count = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ tensors

    def new(self, like: Traced, cols: int | None = None, size: int | None = None, grad: bool | None = None) -> Traced:
        return Traced(next(self._ids), like.rows, like.cols if cols is None else cols,
                      like.size if size is None else size, like.grad if grad is None else grad)

    def save(self, t: Traced) -> None:
        if not t.data:
            self.saved[t.id] = t.nbytes

    def _produce(self, out: Traced, inputs: tuple[Traced, ...], extra: int = 0) -> None:
        """Inference: the op's inputs, the tensors pinned by the Python frames around it and its output are alive
        (plus ``extra``, the op's transient casts); the batch is not counted."""
        alive = {t.id: t.nbytes for t in (*self.pinned, *inputs) if not t.data}
        self.live_peak_bytes = max(self.live_peak_bytes, sum(alive.values()) + out.nbytes + extra)

    def cast(self, x: Traced, size: int) -> Traced:
        """An autocast copy of ``x`` in ``size``-byte elements (or ``x`` itself when it already is)."""
        if x.size == size:
            return x
        out = self.new(x, size=size)
        self.fwd.read(x)
        self.fwd.activations += out.nbytes
        if x.grad:  # the copy's gradient is cast back: read, write
            self.bwd.gradients += out.nbytes + x.nbytes
        return out

    # ------------------------------------------------------------------ ops

    def linear(self, x: Traced, module: nn.Linear) -> Traced:
        b, fan_in, fan_out = self.batch, module.in_features, module.out_features
        bias = module.bias is not None
        xc = self.cast(x, self.act_size) if self.autocast else x
        y = self.new(x, cols=fan_out, size=self.act_size, grad=True)
        mm = 2 * b * fan_in * fan_out
        w_elems, b_elems = fan_in * fan_out, fan_out if bias else 0
        self.forward_matmul += mm
        self.backward_matmul += mm + (mm if x.grad else 0)
        self.forward_elementwise += b * fan_out if bias else 0
        self.backward_elementwise += b * fan_out if bias else 0
        self.forward_gemms.append((b, fan_in, fan_out, False, True, bias))
        gemms = [(fan_out, b, fan_in, True, False, False)]  # grad.t() @ x
        if x.grad:
            gemms.insert(0, (b, fan_out, fan_in, False, False, False))  # grad @ W
        self.backward_gemms.append(gemms)
        self.save(xc)
        cast_w = w_elems * self.act_size if self.autocast else 0
        cast_b = b_elems * self.act_size if self.autocast else 0
        if self.autocast:
            self.autocast_cache_bytes += cast_b + (0 if x.grad else cast_w)
            self.cast_weights_bytes += cast_w if x.grad else 0
        # forward bytes: the fp32 parameters, their casts written and read; input read, output written
        self.fwd.weights += (w_elems + b_elems) * FP32_BYTES + 2 * (cast_w + cast_b)
        self.fwd.read(xc)
        self.fwd.activations += y.nbytes
        # backward: dW = grad.t() @ x (saved x read; under autocast a cast grad written and read), db, dx
        self.bwd.read_saved(xc)
        self.bwd.gradients += y.nbytes + w_elems * FP32_BYTES + 2 * cast_w
        if bias:
            self.bwd.gradients += y.nbytes + b_elems * FP32_BYTES
        if x.grad:
            self.bwd.read_saved(None, cast_w or w_elems * FP32_BYTES, weight=True)
            self.bwd.gradients += y.nbytes + xc.nbytes
        self._produce(y, (x,), extra=(xc.nbytes if xc is not x else 0) + cast_w + cast_b)
        return y

    def activation(self, x: Traced, name: str) -> Traced:
        spec = ACTIVATIONS[name]
        if spec.name == "identity":
            return x
        y = self.new(x)
        self.forward_elementwise += x.rows * x.cols * spec.forward_flops_per_element
        self.backward_elementwise += x.rows * x.cols * spec.backward_flops_per_element
        if spec.saves_input:
            self.save(x)
        if spec.saves_output:
            self.save(y)
        self._elementwise_bytes((x,), y, saved_reads=(x,) if spec.saves_input or spec.saves_output else ())
        return y

    def mul(self, a: Traced, b: Traced) -> Traced:
        y = self.new(a, size=max(a.size, b.size))
        self._count(y, MUL_FLOPS_PER_ELEMENT)
        if a.grad:
            self.save(b)
        if b.grad:
            self.save(a)
        self._elementwise_bytes((a, b), y, saved_reads=tuple(t for t, o in ((b, a), (a, b)) if o.grad), fan_out=2)
        return y

    def add(self, a: Traced, b: Traced) -> Traced:
        y = self.new(a, size=max(a.size, b.size), grad=a.grad or b.grad)
        self._count(y, ADD_FLOPS_PER_ELEMENT)
        self._elementwise_bytes((a, b), y, saved_reads=(), fan_out=2)
        return y

    def dropout(self, x: Traced, p: float) -> Traced:
        if p == 0 or not self.training:
            return x
        y = self.new(x)
        mask = self.new(x, size=BOOL_BYTES if self.cuda else x.size, grad=False)
        self._count(y, DROPOUT_FLOPS_PER_ELEMENT)
        self.save(mask)
        self.fwd.activations += mask.nbytes  # the mask (noise) is written
        self._elementwise_bytes((x,), y, saved_reads=(mask,), extra=mask.nbytes)
        return y

    def norm(self, x: Traced, module: nn.Module) -> Traced:
        kind = "layernorm" if isinstance(module, nn.LayerNorm) else "rmsnorm"
        bias = getattr(module, "bias", None) is not None
        d = x.cols
        fwd_pe, bwd_pe = NORM_FLOPS_PER_ELEMENT[kind]
        self.forward_elementwise += x.rows * d * (fwd_pe + 1 + (1 if bias else 0))
        self.backward_elementwise += x.rows * d * (bwd_pe + 2 + (1 if bias else 0))
        stats = self.new(x, cols=1, size=FP32_BYTES, grad=False)  # rstd (and LayerNorm's mean): fp32 per row
        fp32_in = self.cast(x, FP32_BYTES) if (self.cuda and self.autocast) else x  # CUDA autocast: fp32 policy
        params = d * (2 if bias else 1) * FP32_BYTES
        if kind == "layernorm":  # native_layer_norm saves input, weight, bias, mean, rstd
            y = self.new(fp32_in, grad=True)
            mean = self.new(stats)
            for t in (fp32_in, mean, stats):
                self.save(t)
            reads: tuple[Traced, ...] = (fp32_in, mean, stats)
            saved_params = params
        elif self.cuda:  # the fused kernel saves input, rstd, weight
            y = self.new(fp32_in, grad=True)
            self.save(fp32_in)
            self.save(stats)
            reads, saved_params = (fp32_in, stats), d * FP32_BYTES
        else:  # the CPU composite, in fp32: pow and the rstd product save x; rsqrt and the product save rstd
            up = self.cast(x, FP32_BYTES)
            normed = self.new(up, grad=True)
            y = self.new(x, grad=True)
            if x.grad:
                self.save(up)
                self.save(stats)
            self.save(normed)  # by the weight's product, for the weight's gradient
            reads = (up, up, stats, stats, normed) if x.grad else (normed,)
            saved_params = d * FP32_BYTES if x.grad else 0  # the weight, for the normalised tensor's gradient
        self.fwd.weights += params
        self.bwd.gradients += params
        self.bwd.read_saved(None, saved_params, weight=True) if saved_params else None
        self._elementwise_bytes((fp32_in,), y, saved_reads=reads)
        return y

    # ------------------------------------------------------------------ helpers

    def _count(self, y: Traced, per_element: tuple[int, int]) -> None:
        self.forward_elementwise += y.rows * y.cols * per_element[0]
        self.backward_elementwise += y.rows * y.cols * per_element[1]

    def _elementwise_bytes(self, inputs: tuple[Traced, ...], y: Traced, saved_reads: tuple[Traced, ...],
                           fan_out: int = 1, extra: int = 0) -> None:
        for t in inputs:
            self.fwd.read(t)
        self.fwd.activations += y.nbytes
        for t in saved_reads:
            self.bwd.read_saved(t)
        grads_in = sum(t.nbytes for t in inputs if t.grad)
        self.bwd.gradients += fan_out * y.nbytes if fan_out > 1 else y.nbytes  # read grad_out (once per input)
        self.bwd.gradients += grads_in  # write grad_in
        self._produce(y, inputs, extra)

    @property
    def saved_activations_bytes(self) -> int:
        return sum(self.saved.values())

    @property
    def gemms(self) -> list[tuple]:
        return self.forward_gemms + [g for op in reversed(self.backward_gemms) for g in op]


def trace(net: BlockNet, batch: int, act_size: int = FP32_BYTES, autocast: bool = False, cuda: bool = False,
          input_requires_grad: bool = False, training: bool = True) -> Trace:
    """The forward of ``net`` on a ``(batch, in_features)`` fp32 batch, op by op (see the module docstring);
    ``training=False``: in eval mode, as the inference phase runs it (``TrainStep.infer``)."""
    t = Trace(batch, act_size, autocast, cuda, training)
    x = Traced(next(t._ids), batch, net.in_features, FP32_BYTES, grad=input_requires_grad, data=True)
    if net.in_proj is not None:
        x = t.linear(x, net.in_proj)
    for block in net.blocks:
        t.pinned.append(x)  # nn.Sequential holds a block's input until the block returns
        x = _block(t, x, block)
        t.pinned.pop()
    if net.final_norm is not None:
        x = t.norm(x, net.final_norm)
    if net.out_proj is not None:
        x = t.linear(x, net.out_proj)
    t.output = x
    return t


def _block(t: Trace, x: Traced, block: nn.Module) -> Traced:
    if isinstance(block, FeedForward):
        return _ffn(t, x, block)
    if isinstance(block, SwiGLU):  # w2(silu(w1 x) * w3 x)
        s = t.activation(t.linear(x, block.w1), "silu")
        t.pinned.append(s)  # held on the expression stack while w3 x runs
        up = t.linear(x, block.w3)
        t.pinned.pop()
        return t.dropout(t.linear(t.mul(s, up), block.w2), _p(block.dropout))
    if isinstance(block, PreNormResidual):  # x + ffn(norm(x))
        branch = _ffn(t, t.norm(x, block.norm) if block.norm is not None else x, block.ffn)
        return t.add(x, branch)
    raise ValueError(f"no accounting for block {block!r}")


def _ffn(t: Trace, x: Traced, block: FeedForward) -> Traced:
    t.pinned.append(x)  # FeedForward.forward's argument
    hidden = t.activation(t.linear(x, block.fc_in), block.activation)
    out = t.dropout(t.linear(hidden, block.fc_out), _p(block.dropout))
    t.pinned.pop()
    return out


def has_dropout(net: BlockNet) -> bool:
    """Whether eval mode changes what ``net`` computes (a dropout with p > 0)."""
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules())


def _p(dropout: nn.Dropout | None) -> float:
    return dropout.p if dropout is not None else 0.0
