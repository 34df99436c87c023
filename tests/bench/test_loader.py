"""`mlpbench loader`: the classic loop end to end, on small FashionMNIST-format files written here.

References are independent of the measuring code: a dataset that sleeps a known time per item bounds
the wait from below, the examples a bounded loop sees follow from the batch arithmetic of an epoch,
and torchvision's own FashionMNIST class reads the files.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import mlp
from bench.case.cases import Case
from bench.cli import main
from bench.loader.measure import LoaderCase, LoopConfig, measure_loader_case, skip_reason
from bench.loader.tables import tables
from bench.report.loader import INPUT_BOUND_SHARE, cases_frame
from bench.runs import load_run
from bench.instruments.timing import TimingConfig
from mlp.fashion_mnist_files import write_random_fashion_mnist

SMALL_TRAIN = 256  # examples in the small training split the tests write
FAST = LoopConfig(steps=4, warmup_steps=1, timing=TimingConfig(repeats=2, warmup_s=0.01, min_warmup_iters=1))
SLEEP_S = 0.002  # per item in the slow dataset: a batch of 8 waits >= 16 ms, the b8 step takes well under that


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fmnist")
    write_random_fashion_mnist(root, train_count=SMALL_TRAIN, test_count=16)
    return root


@pytest.fixture(scope="module")
def dataset(small_root):
    return mlp.fashion_mnist_dataset(str(small_root))


class SlowDataset(torch.utils.data.Dataset):
    """FashionMNIST items that each take at least ``SLEEP_S`` to produce."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        time.sleep(SLEEP_S)
        return self.inner[index]


def _case(batch: int, workers: int = 0, pin: bool = False, device: str = "cpu") -> LoaderCase:
    return LoaderCase(Case(network="fashion_mnist", batch=batch, device=device, threads=1), workers, pin)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_case_records_every_part_of_every_step(dataset, workers):
    m = measure_loader_case(_case(16, workers), dataset, FAST)
    assert m.status == "ok", m.reason
    assert {k: len(v) for k, v in m.samples.items()} == {"step": 2, "wait": 4, "copy": 4, "compute": 4, "iteration": 4}
    assert all(v > 0 for v in m.samples["compute"]) and all(v >= 0 for v in m.samples["wait"])
    for wait, copy, compute, whole in zip(*(m.samples[p] for p in ("wait", "copy", "compute", "iteration"))):
        assert wait + copy + compute <= whole * (1 + 1e-9)  # the parts lie inside the iteration
    assert m.loop_examples == 4 * 16
    assert sum(m.samples["iteration"]) <= m.loop_wall_s


def test_a_slow_dataset_makes_the_loop_input_bound(dataset):
    """The wait can be no shorter than the sleeps of the items it waited for (num_workers=0: in this process)."""
    batch = 8
    m = measure_loader_case(_case(batch), SlowDataset(dataset), FAST)
    assert sum(m.samples["wait"]) >= FAST.steps * batch * SLEEP_S
    _, summary = tables([m])
    frame = cases_frame(summary)
    assert frame["loader_share"].iloc[0] > INPUT_BOUND_SHARE and frame["regime"].iloc[0] == "input-bound"
    assert frame["epoch_samples_per_s"].iloc[0] <= batch / (batch * SLEEP_S)  # no faster than the sleeps allow
    assert frame["epoch_samples_per_s"].iloc[0] < frame["step_only_samples_per_s"].iloc[0]


def test_bounded_steps_run_past_an_epoch_as_the_classic_loop_does(tmp_path):
    write_random_fashion_mnist(tmp_path, train_count=40, test_count=8)
    dataset = mlp.fashion_mnist_dataset(str(tmp_path))
    config = LoopConfig(steps=7, warmup_steps=1, timing=FAST.timing)
    m = measure_loader_case(_case(16), dataset, config)
    # an epoch of 40 is batches of 16, 16, 8 (the last one kept); warm-up takes the first 16
    assert m.loop_examples == sum([16, 8, 16, 16, 8, 16, 16])


def test_pinning_on_the_cpu_and_an_absent_cuda_are_rows_not_errors(dataset):
    assert "pin_memory" in skip_reason(_case(16, pin=True))
    assert measure_loader_case(_case(16, pin=True), dataset, FAST).status == "skipped"
    if not torch.cuda.is_available():
        assert skip_reason(_case(16, device="cuda", pin=True)) == "CUDA is not available on this machine"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loop_copies_from_pinned_memory(dataset):
    m = measure_loader_case(_case(64, 1, pin=True, device="cuda"), dataset, FAST)
    assert m.status == "ok", m.reason
    assert all(v > 0 for v in m.samples["copy"]) and m.loop_examples == 4 * 64


def test_the_command_writes_a_run_that_show_and_report_read(small_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["loader", "--batch", "16,32", "--num-workers", "0,1", "--steps", "3", "--warmup-steps", "1",
            "--repeats", "2", "--threads", "1", "--device", "cpu", "--data-root", str(small_root), "--out", str(out)]
    assert main(argv) == 0
    run = load_run(out)
    assert run.meta["kind"] == "loader" and run.meta["data"]["random_content"] is True
    assert run.summary["case_id"].nunique() == 4 and set(run.summary["status"]) == {"ok"}
    assert set(run.summary["phase"]) == {"step", "wait", "copy", "compute", "iteration"}
    waits = run.samples[run.samples["phase"] == "wait"].groupby("case_id").size()
    assert set(waits) == {3}
    report = (out / "report.md").read_text()
    assert "random" in report and (out / "plots" / "loader.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "end to end samples/s" in shown and "workers1" in shown
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--batch", "0"], "--batch"),
    (["--num-workers", "-1"], "--num-workers"),
    (["--num-workers", "1,x"], "not an integer"),
    (["--pin-memory", "maybe"], "not on or off"),
    (["--network", "teaching"], "does not take FashionMNIST"),
    (["--steps", "0"], "--steps"),
    (["--data-root", "/nonexistent/fmnist"], "no FashionMNIST under"),
    (["--dtype", "fp16", "--device", "cpu"], "fp16"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["loader", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlpbench: error:") and "\n" not in err and message in err
    assert not out.exists()


def test_summary_columns_put_the_case_first(dataset):
    _, summary = tables([measure_loader_case(_case(16), dataset, FAST)])
    assert list(summary.columns[:3]) == ["network", "width", "depth"]
    assert {"num_workers", "pin_memory", "persistent_workers", "loader_share", "epoch_samples_per_s",
            "step_only_samples_per_s"} <= set(summary.columns)
    assert isinstance(summary, pd.DataFrame)


def test_a_failed_case_is_a_row_and_the_report_still_draws(dataset, tmp_path):
    from bench.loader.measure import LoaderMeasurement
    from bench.report.loader import format_loader, loader_figure

    good = measure_loader_case(_case(16), dataset, FAST)
    bad = LoaderMeasurement(_case(32), status="error", reason="RuntimeError: boom")
    _, summary = tables([good, bad])
    text = format_loader(summary)
    assert "error: RuntimeError: boom" in text and "workers0" in text
    figure = loader_figure(summary, tmp_path)
    assert figure.path is not None and figure.path.stat().st_size > 0
    assert loader_figure(tables([bad])[1], tmp_path).path is None  # nothing measured: omitted, with a reason
