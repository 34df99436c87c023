"""mlpbench's reference networks, activations, options, data, training step and exact accounting."""

from .accounting import Flops, Memory, flops, inference_flops, layers_of, memory, optimizer_state_bytes
from .activations import ACTIVATIONS, BinaryStep, activation_spec, make_activation
from .blocks import BlockKind, BlockNet, FeedForward, Norm, PreNormResidual, SwiGLU, block_net, llama_hidden
from .data import (
    batches,
    classification_data,
    fashion_mnist_data,
    fashion_mnist_dataset,
    fashion_mnist_loader,
    regression_data,
    torchvision_status,
)
from .models import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_IMAGE,
    MLP,
    count_parameters,
    fashion_mnist_mlp,
    teaching_mlp,
    uniform,
)
from .epilogue import Epilogue, FusedEpilogueMLP, check_activation as check_fused_activation
from .options import Loss, Optimizer, ParamDtype, Precision, matmul_precision, parse_enum
from .counted import CountedFlops, count_flops
from .traffic import Gemm, StepTraffic, Traffic, gemms, known_traffic, traffic
from .train import (
    CLASSIC_LR,
    OPTIMIZER_OPTIONS,
    StepKnobs,
    TrainStep,
    check_knobs,
    make_loss,
    make_optimizer,
    optimizer_impl,
    optimizer_settings,
    optimizer_state_tensors,
    register_loss,
    train,
)

__all__ = [
    "ACTIVATIONS", "BinaryStep", "BlockKind", "BlockNet", "CLASSIC_LR", "CountedFlops", "Epilogue", "FeedForward",
    "FusedEpilogueMLP", "Norm", "ParamDtype", "PreNormResidual", "StepKnobs", "SwiGLU", "block_net",
    "check_fused_activation", "check_knobs", "llama_hidden", "FASHION_MNIST_CLASSES", "FASHION_MNIST_IMAGE",
    "Flops", "Gemm", "Loss", "MLP", "Memory", "OPTIMIZER_OPTIONS", "Optimizer", "Precision", "StepTraffic",
    "Traffic", "TrainStep", "activation_spec", "batches", "classification_data", "count_flops", "count_parameters",
    "fashion_mnist_data", "fashion_mnist_dataset", "fashion_mnist_loader", "fashion_mnist_mlp", "flops", "gemms",
    "inference_flops", "known_traffic", "layers_of", "make_activation", "make_loss", "make_optimizer",
    "matmul_precision", "memory", "optimizer_impl", "optimizer_settings", "optimizer_state_bytes",
    "optimizer_state_tensors", "parse_enum", "regression_data", "register_loss", "teaching_mlp", "torchvision_status", "traffic",
    "train", "uniform",
]
