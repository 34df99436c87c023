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
    presets = {f"bench/presets/{p.name}" for p in (REPO / "bench" / "presets").glob("*.toml")}
    assert presets and presets <= set(names), sorted(presets - set(names))  # package data, not a package
    target = root / "site"
    _run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)], cwd=root)
    return target


def test_the_installed_wheel_runs_every_command_from_outside_the_checkout(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": str(installed)}
    run_dir, sweep = tmp_path / "run", tmp_path / "tiny.toml"
    sweep.write_text('repeats = 2\nwarmup_s = 0\n\n[[grid]]\nwidth = 8\ndepth = 1\nbatch = 4\ndevice = "cpu"\n')
    script = installed / "bin" / "mlpbench"  # the console script the wheel declares
    done = _run([str(script), "run", str(sweep), "--no-progress", "--no-show", "--out", str(run_dir)],
                cwd=tmp_path, env=env)
    assert "1 cases, 0 skipped, 0 failed" in done.stdout, done.stdout
    shown = _run([sys.executable, "-s", "-c", DRIVER, str(installed), str(run_dir)], cwd=tmp_path, env=env)
    assert "helped: run show report compare check profile crosscheck ddp" in shown.stdout
    assert "w8 d1 relu b4 cpu fp32 eager" in shown.stdout and "| ok" in shown.stdout
