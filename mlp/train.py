"""The training step, split into phases the engine can time one by one, and the classic training loop.

``TrainStep`` owns model, loss and optimiser. Its phases are exactly what a
training loop does, so timing them separately and together is meaningful:

    forward(x)              -> out            (under autocast when mixed precision)
    loss_backward(out, y)   -> loss           (loss, then backward)
    optimizer_step()                          (step, then zero_grad(set_to_none=True))
    step(x, y)              -> loss           (all three, nothing in between)
    infer(x)                -> out            (forward under torch.inference_mode)

``StepKnobs`` builds the fastest-step variants (docs/design.md "Fastest-step knobs"): parameters in the
compute dtype, a fused bias + ReLU epilogue, the whole step compiled as one function, the whole step
captured in one CUDA graph. The last two run the step as one unit: ``whole_step`` names it, and then
only ``step`` is the step being measured (``forward`` / ``loss_backward`` / ``optimizer_step`` would run
the uncompiled, uncaptured pieces, so the engine does not time them apart).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .data import batches
from .epilogue import Epilogue, FusedEpilogueMLP
from .graphs import CapturedStep
from .options import Loss, Optimizer, ParamDtype, Precision, parse_enum

CLASSIC_LR = 0.01  # the classic notebook's SGD learning rate
MOMENTUM = 0.9
ADAM_LR = 1e-3  # Adam's own default; the classic 0.01 is too large for it


def _supports(opt_cls: type[torch.optim.Optimizer], flag: str) -> bool:
    return flag in inspect.signature(opt_cls.__init__).parameters


def optimizer_impl(optimizer: Optimizer | str, device: torch.device | str) -> str:
    """Which implementation we ask for: 'fused' where PyTorch has it for the device, else 'foreach'.

    Fused SGD/Adam/AdamW kernels exist for CUDA (and for CPU in recent releases,
    where ``torch.optim`` itself tells us through ``_get_fused_kernels_supported_devices``).
    """
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    device_type = torch.device(device).type
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        fused_devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # older torch: fused means CUDA
        fused_devices = {"cuda"}
    opt_cls = {Optimizer.ADAM: torch.optim.Adam, Optimizer.ADAMW: torch.optim.AdamW}.get(optimizer, torch.optim.SGD)
    if device_type in fused_devices and _supports(opt_cls, "fused"):
        return "fused"
    return "foreach"


# The settings a user may give each optimiser (``--optimizer-args``): values only. Others (momentum on plain
# SGD, amsgrad, foreach/fused) change the optimiser's state or implementation: those are --optimizer choices.
OPTIMIZER_OPTIONS = {
    Optimizer.SGD: ("lr", "weight_decay"),
    Optimizer.SGD_MOMENTUM: ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    Optimizer.ADAM: ("lr", "betas", "eps", "weight_decay"),
    Optimizer.ADAMW: ("lr", "betas", "eps", "weight_decay"),
}
_OPTIMIZER_CLASSES = {Optimizer.SGD: torch.optim.SGD, Optimizer.SGD_MOMENTUM: torch.optim.SGD,
                      Optimizer.ADAM: torch.optim.Adam, Optimizer.ADAMW: torch.optim.AdamW}


def optimizer_settings(optimizer: Optimizer | str, options: Mapping[str, object] | None = None) -> dict[str, object]:
    """The keyword arguments of the optimiser: its defaults here (lr 0.01, or 1e-3 for Adam; momentum 0.9),
    then ``options``. A setting the optimiser does not take, or a value torch refuses, is a ValueError."""
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    options = dict(options or {})
    allowed = OPTIMIZER_OPTIONS[optimizer]
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(f"--optimizer-args: {optimizer.value} takes {', '.join(allowed)}; not {unknown[0]!r}")
    settings = {"lr": ADAM_LR if optimizer in (Optimizer.ADAM, Optimizer.ADAMW) else CLASSIC_LR}
    if optimizer is Optimizer.SGD_MOMENTUM:
        settings["momentum"] = MOMENTUM
    settings.update(options)
    if optimizer is Optimizer.SGD_MOMENTUM and not (isinstance(settings["momentum"], (int, float))
                                                    and settings["momentum"] > 0):
        raise ValueError(f"--optimizer-args: sgd_momentum needs momentum > 0, got {settings['momentum']!r} "
                         "(use --optimizer sgd for none)")
    try:  # torch's own checks (lr >= 0, 0 <= beta < 1, nesterov with dampening 0, ...), on one dummy parameter
        _OPTIMIZER_CLASSES[optimizer]([torch.zeros(1, requires_grad=True)], **settings)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"--optimizer-args: {optimizer.value} refuses {options}: {exc}") from None
    return settings
CAPTURABLE = (Optimizer.ADAM, Optimizer.ADAMW)  # their step counter must live on the device inside a CUDA graph


def make_optimizer(
    optimizer: Optimizer | str, params, device: torch.device | str, lr: float | None = None,
    impl: str | None = None, options: Mapping[str, object] | None = None, capturable: bool = False,
) -> torch.optim.Optimizer:
    """Build the optimiser with an explicit implementation (fused/foreach), never left to a default.

    ``options`` are the user's settings (``optimizer_settings``); ``lr`` (when not None) overrides them.
    ``capturable`` (a CUDA graph replays the step): Adam and AdamW keep ``step`` on the device
    (``capturable=True``); SGD has no step counter and no such flag, and captures as it is.
    """
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    impl = impl or optimizer_impl(optimizer, device)
    if impl not in ("fused", "foreach", "for_loop"):
        raise ValueError(f"unknown optimizer implementation {impl!r}; valid: fused, foreach, for_loop")
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]
    if capturable and optimizer in CAPTURABLE:
        flags = {**flags, "capturable": True}
    settings = optimizer_settings(optimizer, options)
    if lr is not None:  # lr=0.0 is a legal (frozen) setting, not "use the default"
        settings["lr"] = lr
    return _OPTIMIZER_CLASSES[optimizer](list(params), **settings, **flags)


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors an optimiser holds in its state (moments, momentum buffers, Adam's ``step`` counters)."""
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


# A user's loss by the name a case records it under ("my_pkg.losses:fn"): bench.case.plugin registers it when it builds
# the case's model, so that a step built from the case's fields (TrainStep(loss=case.loss)) finds it.
USER_LOSSES: dict[str, Callable] = {}


def register_loss(name: str, fn: Callable) -> None:
    """Make ``make_loss(name)`` return ``fn`` (``fn(output, target)`` -> a scalar tensor)."""
    USER_LOSSES[name] = fn


def make_loss(loss: Loss | str | Callable) -> Callable:
    """The loss function: MSE or cross-entropy, a registered user loss by name, or a callable as it is."""
    if isinstance(loss, str) and loss in USER_LOSSES:
        return USER_LOSSES[loss]
    if callable(loss) and not isinstance(loss, (str, Loss)):
        return loss
    loss = parse_enum(Loss, loss, "loss")
    return nn.MSELoss() if loss is Loss.MSE else nn.CrossEntropyLoss()


@dataclass(frozen=True)
class StepKnobs:
    """How the step is built; the defaults are the plain eager step with fp32 master weights.

    - ``compile_mode``: a ``torch.compile`` mode, or None for eager;
    - ``compile_step``: compile the whole step (forward, loss, backward, optimiser step and zero_grad) as
      one function instead of the model alone; the optimiser is then the foreach one, which inductor fuses
      (PyTorch's compiled-optimizer recipe: ``fused=True`` kernels are opaque to it);
    - ``cuda_graph``: capture the whole step in one CUDA graph (``mlp.graphs``);
    - ``param_dtype``: ``COMPUTE`` keeps parameters, gradients and optimiser state in bf16 (no autocast);
    - ``epilogue``: ``FUSED`` runs each Linear + ReLU as one ``_addmm_activation`` (``mlp.epilogue``).
    """

    compile_mode: str | None = None
    compile_step: bool = False
    cuda_graph: bool = False
    param_dtype: ParamDtype = ParamDtype.FP32
    epilogue: Epilogue = Epilogue.NONE

    def __post_init__(self):
        object.__setattr__(self, "param_dtype", parse_enum(ParamDtype, self.param_dtype, "param_dtype"))
        object.__setattr__(self, "epilogue", parse_enum(Epilogue, self.epilogue, "epilogue"))
        if self.compile_step and not self.compile_mode:
            raise ValueError("compile scope 'step' needs a compile mode (e.g. --compile default)")


def check_knobs(knobs: StepKnobs, precision: Precision, device_type: str) -> None:
    """A ValueError for a knob that cannot build a correct step on this device and precision."""
    if knobs.param_dtype is ParamDtype.COMPUTE and precision is Precision.FP16:
        raise ValueError("param_dtype 'compute' with fp16: GradScaler cannot unscale fp16 gradients "
                         "(pure fp16 training needs a loss-scaling recipe this bench does not build); use bf16")
    if knobs.cuda_graph and device_type != "cuda":
        raise ValueError("cuda_graph 'step' needs device 'cuda' (CUDA graphs)")
    if knobs.cuda_graph and precision is Precision.FP16:
        raise ValueError("cuda_graph 'step' cannot capture fp16's GradScaler (its inf check syncs the host "
                         "every step); use bf16")
    if knobs.cuda_graph and knobs.compile_mode not in (None, "default"):
        raise ValueError(f"cuda_graph 'step' with compile {knobs.compile_mode!r}: that mode captures CUDA graphs "
                         "itself; use --compile none or default")


class TrainStep:
    """One training step of ``model``, with each phase callable on its own.

    Gradients are reset with ``zero_grad(set_to_none=True)`` inside the
    optimiser phase, so repeated steps never accumulate. With ``fp16`` a
    GradScaler scales the loss (the standard recipe; it costs one host sync
    per step for the inf check). ``knobs`` (``StepKnobs``) choose the fastest-step variants.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss | str = Loss.MSE,
        optimizer: Optimizer | str = Optimizer.SGD,
        precision: Precision | str = Precision.FP32,
        device: torch.device | str = "cpu",
        lr: float | None = None,
        compiled_model: nn.Module | None = None,
        optimizer_options: Mapping[str, object] | None = None,
        knobs: StepKnobs = StepKnobs(),
    ):
        self.device = torch.device(device)
        self.precision = parse_enum(Precision, precision, "dtype")
        if self.precision is Precision.FP16 and self.device.type != "cuda":
            raise ValueError("dtype 'fp16' needs a CUDA device (autocast fp16 on CPU is not a training recipe)")
        self.knobs = knobs
        check_knobs(knobs, self.precision, self.device.type)
        # parameters in the compute dtype: only where there is one below fp32 (fp32/tf32 have nothing to cast)
        self.param_dtype = self.precision.autocast_dtype if knobs.param_dtype is ParamDtype.COMPUTE else None
        self.optimizer_kind = parse_enum(Optimizer, optimizer, "optimizer")
        self.model = model.to(self.device, dtype=self.param_dtype)
        self._mode_dependent = any(isinstance(m, MODE_DEPENDENT) for m in self.model.modules())
        module = FusedEpilogueMLP(self.model) if knobs.epilogue is Epilogue.FUSED else self.model
        if compiled_model is None and knobs.compile_mode and not knobs.compile_step:
            # dynamic=False: each batch size is its own static graph, as in a real training job
            compiled_model = torch.compile(module, mode=knobs.compile_mode, dynamic=False)
        self.forward_model = compiled_model if compiled_model is not None else module
        self.loss_fn = make_loss(loss)
        self.optimizer_impl = "foreach" if knobs.compile_step else optimizer_impl(self.optimizer_kind, self.device)
        self.optimizer = make_optimizer(self.optimizer_kind, self.model.parameters(), self.device, lr,
                                        self.optimizer_impl, optimizer_options, capturable=knobs.cuda_graph)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision is Precision.FP16 else None
        self._whole = self._eager_step
        if knobs.compile_step:
            self._whole = torch.compile(self._eager_step, mode=knobs.compile_mode, dynamic=False)
        if knobs.cuda_graph:
            self._whole = CapturedStep(self._whole, self.optimizer)

    @property
    def whole_step(self) -> str:
        """'' when the phases are the step's own pieces; else what runs the step as one unit."""
        if self.knobs.cuda_graph:
            return "the step is replayed as one CUDA graph (cuda_graph step)"
        if self.knobs.compile_step:
            return "the step runs as one compiled function (compile_scope step)"
        return ""

    def _autocast(self):
        dtype = self.precision.autocast_dtype
        if dtype is None or self.param_dtype is not None:
            return contextlib.nullcontext()
        # a CUDA graph replays the casts it captured: autocast's cache would hand later steps stale copies
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=not self.knobs.cuda_graph)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as the step reads it: with parameters in the compute dtype the input is stored in it too
        (as a bf16 input pipeline would deliver it); regression targets stay fp32, as the loss is fp32."""
        return (x.to(self.param_dtype) if self.param_dtype is not None else x), y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.param_dtype is not None:
            x = x.to(self.param_dtype)  # a no-op for a prepared batch
        with self._autocast():
            return self.forward_model(x)

    def loss_backward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.param_dtype is not None:
            out = out.float()  # the loss in fp32, as autocast runs mse_loss and cross_entropy
        with self._autocast():
            loss = self.loss_fn(out, y)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss

    def optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._whole(x, y)

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss_backward(self.forward(x), y)
        self.optimizer_step()
        return loss

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The forward as inference runs it: under ``inference_mode``, and in eval mode where the model has a
        module that eval mode changes (dropout, batch norm), so an inference phase draws no dropout mask. A model
        without one is left in train mode: toggling would only add a compiled graph per mode."""
        if self.param_dtype is not None:
            x = x.to(self.param_dtype)
        with torch.inference_mode(), self._autocast(), _eval_mode(self.model, self._mode_dependent):
            return self.forward_model(x)


MODE_DEPENDENT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                  nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # modules that eval() changes


@contextlib.contextmanager
def _eval_mode(model: nn.Module, switch: bool):
    """``model`` in eval mode for the block where ``switch``; its training flags restored after."""
    if not switch:
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def train(step: TrainStep, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
          seed: int = 0) -> list[float]:
    """The classic loop: for each epoch, for each mini-batch, one step. Returns the mean loss per epoch."""
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for xb, yb in batches(x, y, batch_size, seed=seed + epoch):
            total += step.step(xb, yb).item() * len(xb)
            count += len(xb)
        losses.append(total / count)
    return losses
