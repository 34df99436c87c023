"""The package as a user installs it: a wheel built from the sources, installed NOT editable into a
folder, run from outside the checkout. Every subcommand's --help, then one real case from a sweep file
(which loads every shipped preset, package data), then `show`.

A wheel that misses a subpackage (pyproject once listed them by hand and left out bench.ddp) fails
here with ModuleNotFoundError, where the editable development install hides it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # the mlp_step fixture is tried in a throw-away project

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "bench", "mlp")  # what the build reads
TIMEOUT_S = 300

DRIVER = """
import contextlib, io, sys
from pathlib import Path
import bench, bench.cli
target = Path(sys.argv[1]).resolve()
assert Path(bench.__file__).resolve().is_relative_to(target), f"bench imported from {bench.__file__}"
parser = bench.cli.build_parser()
commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
for name in commands:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            bench.cli.main([name, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, (name, exit_.code)
    assert out.getvalue().startswith(f"usage: mlpbench {name}"), (name, out.getvalue()[:200])
print("helped:", " ".join(commands))
sys.exit(bench.cli.main(["show", sys.argv[2]]))
"""


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources and installed with --target (no editable hooks)."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (the test extra)")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), str(src)],
         cwd=root)
    wheel = next((root / "dist").glob("mlpbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(REPO)).replace("/", ".") for p in REPO.glob("*/**/__init__.py")
                if p.parts[len(REPO.parts)] in ("bench", "mlp")}
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages <= in_wheel, sorted(packages - in_wheel)
    presets = {f"bench/model/presets/{p.name}" for p in (REPO / "bench" / "model" / "presets").glob("*.toml")}
    assert presets and presets <= set(names), sorted(presets - set(names))  # package data, not a package
    target = root / "site"
    _run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)], cwd=root)
    return target


@pytest.mark.e2e  # builds and installs the wheel in a fresh venv (~30 s on 2 cores): its own .ci/run step, with the others here
def test_the_installed_wheel_runs_every_command_from_outside_the_checkout(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": str(installed)}
    run_dir, sweep = tmp_path / "run", tmp_path / "tiny.toml"
    sweep.write_text('repeats = 2\nwarmup_s = 0\n\n[[grid]]\nwidth = 8\ndepth = 1\nbatch = 4\ndevice = "cpu"\n')
    script = installed / "bin" / "mlpbench"  # the console script the wheel declares
    done = _run([str(script), "run", str(sweep), "--no-progress", "--no-show", "--out", str(run_dir)],
                cwd=tmp_path, env=env)
    assert "1 cases, 0 skipped, 0 failed" in done.stdout, done.stdout
    shown = _run([sys.executable, "-s", "-c", DRIVER, str(installed), str(run_dir)], cwd=tmp_path, env=env)
    assert "helped: run show report compare check bisect profile crosscheck ddp loader history tune\n" \
        in shown.stdout
    assert "w8 d1 relu b4 cpu fp32 eager" in shown.stdout and "| ok" in shown.stdout


USER_MODEL = """
from torch import nn


def make_ffn(in_features, out_features, hidden=16, expansion=2):
    return nn.Sequential(nn.Linear(in_features, hidden * expansion), nn.GELU(),
                         nn.Linear(hidden * expansion, out_features))
"""
MEASURE = """
import sys
from pathlib import Path
from bench import measure
assert Path(__import__("bench").__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve())
result = measure("blocks.py:make_ffn", batch=4, width=8, model_args={"hidden": 4}, limits=False, repeats=2,
                 warmup_s=0.0, out="api-run")
step = result.step.iloc[0]
print("measured:", step["status"], step["flops_source"], int(step["matmul_flops"]), step["model_args"])
"""


@pytest.mark.e2e
def test_the_installed_wheel_measures_a_users_model_file_through_the_cli_and_measure(installed, tmp_path):
    """Done-when 1 of issue 38: only the wheel installed, a module file beside the user, two ways in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": str(installed)}
    (tmp_path / "blocks.py").write_text(USER_MODEL)
    done = _run([str(installed / "bin" / "mlpbench"), "run", "--model", "./blocks.py:make_ffn", "--model-args",
                 "hidden=4,8", "--width", "8", "--batch", "4", "--repeats", "2", "--warmup-s", "0", "--no-progress",
                 "--no-show", "--out", "cli-run"], cwd=tmp_path, env=env)
    assert "2 cases, 0 skipped, 0 failed" in done.stdout, done.stdout
    measured = _run([sys.executable, "-s", "-c", MEASURE, str(installed)], cwd=tmp_path, env=env)
    # 8 -> 8 -> 8 at batch 4: forward 2 GEMMs, backward 3 (the data needs no gradient): 5 x 2*4*8*8
    assert "measured: ok counted 2560 hidden=4" in measured.stdout, measured.stdout


USER_TEST = """
import json
from pathlib import Path
import torch
import bench.pytest_plugin

def make_ffn(width, hidden):
    return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, width))

def test_the_plugin_comes_from_the_wheel():
    assert Path(bench.pytest_plugin.__file__).resolve().is_relative_to(Path({target!r}).resolve())

def test_ffn_step(mlp_step):
    mlp_step(make_ffn, batch=16, width=32, model_args={{"hidden": 64}}, min_time_s=0.05, warmup_s=0.02)
"""


@pytest.mark.e2e  # two inner pytest sessions, each importing torch: ~25 s on 2 cores
def test_the_mlp_step_fixture_of_the_installed_wheel_feeds_pytest_benchmark(installed, pytester, monkeypatch):
    """A user's project: the pytest11 entry point is found in the wheel's dist-info (not the editable install),
    the engine's step samples are the test's pytest-benchmark rounds (checked against the run folder the
    fixture kept), and ``--benchmark-compare`` reads the saved run back and gates on it."""
    pytest.importorskip("pytest_benchmark")
    import json

    import pandas as pd

    monkeypatch.setenv("PYTHONPATH", str(installed))
    pytester.makepyfile(test_user=USER_TEST.format(target=str(installed)))
    storage = pytester.path / "benchmarks"
    common = ("-m", "pytest", "-q", "-p", "no:cacheprovider", f"--benchmark-storage=file://{storage}")
    first = pytester.run(sys.executable, *common, "--benchmark-autosave", "--mlpbench-out", "runs")
    assert first.ret == 0, first.stdout.str()[-3000:]
    saved = json.loads(next(storage.rglob("*.json")).read_text())
    (entry,) = saved["benchmarks"]
    run = pytester.path / "runs" / "test_ffn_step"
    samples = pd.read_csv(run / "samples.csv")
    step = samples[samples["phase"] == "step"]
    assert entry["stats"]["rounds"] == len(step) > 0
    assert entry["stats"]["median"] == pytest.approx(float(step["seconds"].median()), rel=1e-9)
    assert entry["extra_info"]["case_id"] == step["case_id"].iloc[0]
    second = pytester.run(sys.executable, *common, "--benchmark-compare", "--benchmark-compare-fail=min:1000000%")
    assert second.ret == 0 and "0001" in second.stdout.str(), second.stdout.str()[-3000:]
    alone = pytester.run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
                         "--mlpbench-out", "alone")
    assert alone.ret == 0 and (pytester.path / "alone" / "test_ffn_step" / "samples.csv").is_file(), \
        alone.stdout.str()[-3000:]  # without pytest-benchmark the fixture still measures
