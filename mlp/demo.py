"""The classic MLP notebooks, reproduced correctly and in seconds: ``python -m mlp.demo``.

1. The FashionMNIST classifier: its layers, its parameter count, and the softmax
   class probabilities for a batch of FashionMNIST-shaped images (synthetic tensors).
2. The classic FashionMNIST loop, through the path the notebook used:
   ``torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=ToTensor())``,
   ``DataLoader(batch_size=64, shuffle=True)``, SGD at lr 0.01 and cross-entropy, for a bounded
   number of steps. The files are a local FashionMNIST when ``MLPBENCH_DATA`` points at one
   (torchvision's layout), else FashionMNIST-format IDX files of random, class-patterned content
   written once to a cache folder (``mlp.fashion_mnist_files``); nothing is downloaded.
3. The teaching net trained with SGD (the classic learning rate) and MSE on data
   it can learn, in mini-batches that keep the last partial batch; the loss falls
   every epoch.
4. A binary-step net trains without error: its backward is the exact derivative,
   zero, so only the last layer learns.
"""

from __future__ import annotations

import torch

from .models import FASHION_MNIST_CLASSES, FASHION_MNIST_IMAGE, count_parameters, fashion_mnist_mlp, teaching_mlp
from .data import classification_data, fashion_mnist_dataset, fashion_mnist_loader, regression_data
from .fashion_mnist_files import resolve_root
from .options import Loss, Optimizer
from .train import CLASSIC_LR, TrainStep, train

DEMO_SEED = 0  # fixed, so every run prints the same numbers
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
PROBABILITY_IMAGES = 4  # rows of the probability table
PROBABILITY_DECIMALS = 3  # enough to see that an untrained net is close to uniform (0.1)

TEACHING_INPUTS, TEACHING_OUTPUTS = 3, 1  # a small regression problem, as in the notebook
TRAIN_EXAMPLES = 1000  # not a multiple of BATCH_SIZE: the last partial batch (8) is trained on, not dropped
BATCH_SIZE = 32
EPOCHS = 5  # about a second on 2 CPU cores; the loss falls every epoch at lr 0.01
BINARY_STEP_EPOCHS = 2  # only to show that it runs
CLASSIC_BATCH = 64  # the notebook's DataLoader batch size
CLASSIC_STEPS = 100  # of the 938 in an epoch: a few seconds on 2 cores, and the loss visibly falls
CLASSIC_LOG_EVERY = 25  # steps per printed mean loss


def main() -> None:
    torch.manual_seed(DEMO_SEED)
    _show_fashion_mnist_net()
    print()
    _classic_fashion_mnist_loop()
    print()
    _train_teaching_net()
    print()
    _train_binary_step_net()


def _show_fashion_mnist_net() -> None:
    model = fashion_mnist_mlp().eval()
    print(model)
    print(f"parameters: {count_parameters(model):,}")
    images, _ = classification_data(PROBABILITY_IMAGES, FASHION_MNIST_IMAGE, FASHION_MNIST_CLASSES, seed=DEMO_SEED)
    with torch.inference_mode():
        logits = model(images)  # (images, 1, 28, 28) -> (images, 10): raw scores, no ReLU on them
        probabilities = torch.softmax(logits, dim=1)  # each row sums to 1
    print(f"\nsoftmax class probabilities for {PROBABILITY_IMAGES} random FashionMNIST-shaped images (untrained net):")
    print(_probability_table(probabilities))


def _probability_table(probabilities: torch.Tensor) -> str:
    widths = [max(len(label), PROBABILITY_DECIMALS + 2) for label in FASHION_MNIST_LABELS]
    header = "image  " + "  ".join(label.rjust(w) for label, w in zip(FASHION_MNIST_LABELS, widths)) + "    sum"
    rows = [header]
    for index, row in enumerate(probabilities.tolist()):
        cells = "  ".join(f"{p:.{PROBABILITY_DECIMALS}f}".rjust(w) for p, w in zip(row, widths))
        rows.append(f"{index:>5}  {cells}  {sum(row):.{PROBABILITY_DECIMALS}f}")
    return "\n".join(rows)


def _classic_fashion_mnist_loop() -> None:
    source = resolve_root()  # $MLPBENCH_DATA or the cache: a real copy there is read, else random files
    dataset = fashion_mnist_dataset(str(source.root), train=True)
    loader = fashion_mnist_loader(dataset, CLASSIC_BATCH, shuffle=True, seed=DEMO_SEED)
    step = TrainStep(fashion_mnist_mlp(), loss=Loss.CROSS_ENTROPY, optimizer=Optimizer.SGD, lr=CLASSIC_LR)
    print(f"classic loop: FashionMNIST ({len(dataset):,} training images; {source.description}) -> "
          f"DataLoader(batch_size={CLASSIC_BATCH}, shuffle=True) -> SGD lr {CLASSIC_LR}, cross-entropy; "
          f"{CLASSIC_STEPS} steps")
    total = 0.0
    for index, (images, labels) in enumerate(loader, start=1):  # (64, 1, 28, 28) floats in [0, 1], (64,) labels
        total += step.step(images, labels).item()
        if index % CLASSIC_LOG_EVERY == 0:
            print(f"step {index}/{CLASSIC_STEPS}  mean loss {total / CLASSIC_LOG_EVERY:.4f}")
            total = 0.0
        if index == CLASSIC_STEPS:
            break


def _train_teaching_net() -> None:
    x, y = regression_data(TRAIN_EXAMPLES, TEACHING_INPUTS, TEACHING_OUTPUTS, learnable=True, seed=DEMO_SEED)
    model = teaching_mlp(TEACHING_INPUTS, TEACHING_OUTPUTS)
    step = TrainStep(model, loss=Loss.MSE, optimizer=Optimizer.SGD, lr=CLASSIC_LR)
    print(f"teaching net {TEACHING_INPUTS} -> 256 -> 128 -> 128 -> {TEACHING_OUTPUTS}, "
          f"{count_parameters(model):,} parameters; SGD lr {CLASSIC_LR}, MSE, "
          f"{TRAIN_EXAMPLES} examples in batches of {BATCH_SIZE}")
    for epoch, loss in enumerate(train(step, x, y, EPOCHS, BATCH_SIZE, seed=DEMO_SEED), start=1):
        print(f"epoch {epoch}/{EPOCHS}  loss {loss:.6f}")


def _train_binary_step_net() -> None:
    x, y = regression_data(TRAIN_EXAMPLES, TEACHING_INPUTS, TEACHING_OUTPUTS, learnable=True, seed=DEMO_SEED)
    step = TrainStep(teaching_mlp(TEACHING_INPUTS, TEACHING_OUTPUTS, activation="binary_step"), lr=CLASSIC_LR)
    step.loss_backward(step.forward(x[:BATCH_SIZE]), y[:BATCH_SIZE])
    first, last = step.model.linears[0], step.model.linears[-1]
    first_grad, last_grad = first.weight.grad.abs().max().item(), last.weight.grad.abs().max().item()
    step.optimizer_step()
    losses = train(step, x, y, BINARY_STEP_EPOCHS, BATCH_SIZE, seed=DEMO_SEED)
    print(f"binary step net trains: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {BINARY_STEP_EPOCHS} epochs; "
          f"zero backward: max |grad| first layer {first_grad:g}, last layer {last_grad:.4f}")


if __name__ == "__main__":
    main()
