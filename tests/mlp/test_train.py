"""mlp.train: the training step's phases, the data helpers, the loop, bad input, and the demo."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

import mlp
from mlp import demo

TEST_SEED = 0  # any fixed value: tests compare against references, not recorded numbers
IN_FEATURES, OUT_FEATURES = 3, 1
TRAIN_EXAMPLES = 512
BATCH_SIZE = 32
EPOCHS = 4
FIXED_BATCH = 16  # the classification check overfits one small batch
FIXED_BATCH_STEPS = 10


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(TEST_SEED)  # every test starts from the same RNG state, whatever ran before


@pytest.mark.parametrize("optimizer", list(mlp.Optimizer), ids=lambda v: v.value)
def test_training_lowers_loss_on_learnable_data(optimizer: mlp.Optimizer) -> None:
    x, y = mlp.regression_data(TRAIN_EXAMPLES, IN_FEATURES, OUT_FEATURES, learnable=True)
    step = mlp.TrainStep(mlp.teaching_mlp(IN_FEATURES, OUT_FEATURES), loss="mse", optimizer=optimizer)
    losses = mlp.train(step, x, y, epochs=EPOCHS, batch_size=BATCH_SIZE)
    assert len(losses) == EPOCHS
    assert losses[-1] < 0.5 * losses[0]


def test_regression_data_is_seeded_and_learnable_targets_differ_from_noise() -> None:
    x, y = mlp.regression_data(64, IN_FEATURES, OUT_FEATURES, learnable=True)
    x_again, y_again = mlp.regression_data(64, IN_FEATURES, OUT_FEATURES, learnable=True)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)  # seeded
    _, y_random = mlp.regression_data(64, IN_FEATURES, OUT_FEATURES, learnable=False)
    assert not torch.equal(y, y_random)


def test_classification_lowers_loss_on_a_fixed_batch() -> None:
    x, y = mlp.classification_data(FIXED_BATCH)
    assert x.shape == (FIXED_BATCH, *mlp.FASHION_MNIST_IMAGE) and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() < 1 and 0 <= y.min() and y.max() < mlp.FASHION_MNIST_CLASSES
    step = mlp.TrainStep(mlp.fashion_mnist_mlp(), loss="cross_entropy", optimizer="sgd_momentum")
    losses = [step.step(x, y).item() for _ in range(FIXED_BATCH_STEPS)]
    assert losses[-1] < losses[0]


def test_bf16_step_runs_on_cpu() -> None:
    step = mlp.TrainStep(mlp.uniform(16, 2), precision="bf16")
    x, y = torch.randn(8, 16), torch.randn(8, 16)
    assert step.forward(x).dtype == torch.bfloat16  # autocast: bf16 activations, fp32 master weights
    loss = step.step(x, y)
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in step.model.parameters())


def test_fp16_on_cpu_is_rejected() -> None:
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        mlp.TrainStep(mlp.uniform(4, 1), precision="fp16")


def test_infer_runs_under_inference_mode() -> None:
    step = mlp.TrainStep(mlp.uniform(8, 2))
    out = step.infer(torch.randn(4, 8))
    assert not out.requires_grad
    assert torch.is_inference(out)


def test_optimizer_step_resets_gradients_to_none() -> None:
    step = mlp.TrainStep(mlp.uniform(8, 2), optimizer="adam")
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    step.loss_backward(step.forward(x), y)
    assert all(p.grad is not None for p in step.model.parameters())
    step.optimizer_step()
    assert all(p.grad is None for p in step.model.parameters())


def test_optimizer_step_changes_parameters() -> None:
    step = mlp.TrainStep(mlp.uniform(8, 1))
    before = [p.detach().clone() for p in step.model.parameters()]
    step.step(torch.randn(4, 8), torch.randn(4, 8))
    assert all(not torch.equal(b, p) for b, p in zip(before, step.model.parameters()))


# The documented settings, written out: torch.optim built by hand with them is the reference.
HAND_BUILT = {
    "sgd": lambda params, flags: torch.optim.SGD(params, lr=0.01, **flags),
    "sgd_momentum": lambda params, flags: torch.optim.SGD(params, lr=0.01, momentum=0.9, **flags),
    "adam": lambda params, flags: torch.optim.Adam(params, lr=1e-3, **flags),
    "adamw": lambda params, flags: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, **flags),
}
REFERENCE_STEPS = 2  # the second step reads the first step's state (momentum, moments)


@pytest.mark.parametrize("optimizer", list(HAND_BUILT))
def test_optimizers_equal_hand_built_torch_optim(optimizer: str) -> None:
    """After two steps the parameters equal those of a hand-built torch.optim with the documented settings.

    The reference uses the same kernel family (fused / foreach) the step reports, so the two runs
    are the same arithmetic and must agree to float32 rounding; a wrong class or setting
    (Adam for AdamW: no decoupled weight decay; SGD without momentum) moves them by far more.
    """
    model = mlp.uniform(8, 2)
    reference = copy.deepcopy(model)
    step = mlp.TrainStep(model, optimizer=optimizer)
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}}[step.optimizer_impl]
    hand_built = HAND_BUILT[optimizer](reference.parameters(), flags)
    loss_fn = torch.nn.MSELoss()
    for _ in range(REFERENCE_STEPS):
        x, y = torch.randn(4, 8), torch.randn(4, 8)
        step.step(x, y)
        loss_fn(reference(x), y).backward()
        hand_built.step()
        hand_built.zero_grad(set_to_none=True)
    for ours, theirs in zip(step.model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    assert type(step.optimizer) is type(hand_built)


def _precision_flags() -> tuple[bool, bool, str]:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def test_matmul_precision_sets_tf32_and_restores_the_flags() -> None:
    """TF32 on for tf32, off for every other precision, and the caller's flags back after (an error too)."""
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")  # an unusual caller's state: TF32 matmuls, cuDNN TF32 off
    torch.backends.cudnn.allow_tf32 = False
    caller = _precision_flags()
    try:
        assert caller == (True, False, "medium")
        for precision, inside in ((mlp.Precision.TF32, (True, True, "high")),
                                  (mlp.Precision.FP32, (False, False, "highest")),
                                  (mlp.Precision.BF16, (False, False, "highest"))):
            with mlp.matmul_precision(precision):
                assert _precision_flags() == inside, precision
            assert _precision_flags() == caller, precision
        with pytest.raises(RuntimeError, match="inside"), mlp.matmul_precision(mlp.Precision.TF32):
            raise RuntimeError("inside")
        assert _precision_flags() == caller
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_example_once(shuffle: bool) -> None:
    n, batch_size = 10, 3  # 3 does not divide 10: the last batch has 1 example
    x = torch.arange(n)
    y = x * 100  # pairs must stay together
    got = list(mlp.batches(x, y, batch_size, shuffle=shuffle, seed=1))
    assert [len(xb) for xb, _ in got] == [3, 3, 3, 1]
    assert sorted(torch.cat([xb for xb, _ in got]).tolist()) == list(range(n))
    assert all(torch.equal(yb, xb * 100) for xb, yb in got)


def test_batches_drop_last_drops_exactly_the_remainder() -> None:
    n, batch_size = 10, 3
    x = torch.arange(n)
    got = list(mlp.batches(x, x, batch_size, drop_last=True, seed=1))
    assert [len(xb) for xb, _ in got] == [3, 3, 3]
    seen = torch.cat([xb for xb, _ in got]).tolist()
    assert len(set(seen)) == n - n % batch_size


def test_batches_reject_bad_input() -> None:
    x = torch.arange(4)
    with pytest.raises(ValueError, match="batch_size.*got 0"):
        list(mlp.batches(x, x, 0))
    with pytest.raises(ValueError, match="differ in length"):
        list(mlp.batches(x, x[:3], 2))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("keyword", "bad", "valid"), [
    ("optimizer", "lbfgs", r"sgd, sgd_momentum, adam, adamw"),
    ("loss", "hinge", r"mse, cross_entropy"),
    ("precision", "fp8", r"fp32, tf32, bf16, fp16"),
])
def test_train_step_rejects_unknown_choices(keyword: str, bad: str, valid: str) -> None:
    with pytest.raises(ValueError, match=rf"'{bad}'.*valid: {valid}"):
        mlp.TrainStep(mlp.uniform(4, 1), **{keyword: bad})


@pytest.mark.parametrize(("enum_cls", "what"), [
    (mlp.Optimizer, "optimizer"), (mlp.Loss, "loss"), (mlp.Precision, "dtype"),
])
def test_parse_enum_names_value_and_choices(enum_cls: type, what: str) -> None:
    valid = ", ".join(member.value for member in enum_cls)
    with pytest.raises(ValueError, match=rf"unknown {what} 'nope'; valid: {re.escape(valid)}"):
        mlp.parse_enum(enum_cls, "nope", what)
    first = next(iter(enum_cls))
    assert mlp.parse_enum(enum_cls, f" {first.value.upper()} ", what) is first


# --------------------------------------------------------------------------- the demo


@pytest.fixture
def demo_data(tmp_path_factory, monkeypatch) -> Path:
    """The demo's FashionMNIST files in a folder of the test's own (not the user's cache)."""
    root = tmp_path_factory.getbasetemp() / "demo-fashion-mnist"
    monkeypatch.setenv("MLPBENCH_DATA", str(root))
    return root


def test_demo_prints_the_classics_and_a_falling_loss(demo_data, capsys: pytest.CaptureFixture[str]) -> None:
    demo.main()
    printed = capsys.readouterr().out
    assert "669,706" in printed or "669706" in printed
    assert "Linear(in_features=784, out_features=512" in printed
    losses = [float(v) for v in re.findall(r"^epoch \d+/\d+\s+loss ([0-9.]+)$", printed, flags=re.MULTILINE)]
    assert len(losses) >= 2
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert "binary step" in printed
    classic = [float(v) for v in re.findall(r"^step \d+/\d+\s+mean loss ([0-9.]+)$", printed, flags=re.MULTILINE)]
    assert len(classic) == demo.CLASSIC_STEPS // demo.CLASSIC_LOG_EVERY
    assert classic[-1] < classic[0]  # SGD at lr 0.01 learns the class patterns of the random images
    assert "random content" in printed and str(demo_data) in printed


def test_demo_reads_the_data_through_torchvision_and_a_dataloader(demo_data, monkeypatch) -> None:
    """The classic path, not a shortcut: torchvision's FashionMNIST with ToTensor, batches from a DataLoader."""
    from torchvision.datasets import FashionMNIST

    seen = []
    original = FashionMNIST.__getitem__

    def spy(self, index):
        item = original(self, index)
        seen.append(item[0].shape)
        return item

    monkeypatch.setattr(demo, "CLASSIC_STEPS", demo.CLASSIC_LOG_EVERY)  # a few steps show the path
    monkeypatch.setattr(FashionMNIST, "__getitem__", spy)
    batches = []
    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__",
                        lambda self, _it=torch.utils.data.DataLoader.__iter__: batches.append(self.batch_size) or _it(self))
    demo._classic_fashion_mnist_loop()
    assert len(seen) == demo.CLASSIC_STEPS * demo.CLASSIC_BATCH and set(seen) == {(1, 28, 28)}
    assert batches == [demo.CLASSIC_BATCH]
