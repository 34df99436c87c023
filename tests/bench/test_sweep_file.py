"""Sweep files (bench.model.sweep_file): the presets as shipped files give the cases they gave as Python, a user's file
gives the cases of the same flags, and every kind of fault is one line naming the file, the line and the key.

Parse-only, except one tiny real run (the budgets a file sets, and the flag that wins over them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.engine import runner
from bench.model import sweep_file
from bench.model.case_fields import SWEEP_FIELDS
from bench.limits.ceiling import Ceiling
from bench.case.cases import PRESETS, Sweep
from bench.cli import main as cli_main
from bench.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
# Case lists of the presets as bench/case/cases.py declared them in Python, before they became files (commit 561afd2)
FROZEN = json.loads((Path(__file__).parent / "data" / "presets_561afd2.json").read_text())["presets"]
# ... and the built-in blocks' preset as its Python definition gave it (before it became blocks.toml)
FROZEN |= json.loads((Path(__file__).parent / "data" / "presets_blocks.json").read_text())["presets"]


# --------------------------------------------------------------------------- the presets


def test_the_shipped_presets_are_the_nine_of_before():
    assert set(sweep_file.preset_names()) == set(FROZEN) == set(PRESETS)
    assert len(FROZEN) == 9
    assert sorted(p.stem for p in (REPO / "bench" / "model" / "presets").glob("*.toml")) == sorted(FROZEN)


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_a_preset_file_gives_exactly_the_cases_it_gave_as_python(name):
    sweep, frozen = PRESETS[name], FROZEN[name]
    assert [c.case_id for c in sweep.cases()] == frozen["case_ids"]  # same cases, same order
    if "case_ids_cpu_cuda" in frozen:  # what a machine with a GPU measures (every device)
        assert [c.case_id for c in sweep.cases({"device": ("cpu", "cuda")})] == frozen["case_ids_cpu_cuda"]
    assert (sweep.description, sweep.all_devices, sweep.max_case_s) == (
        frozen["description"], frozen["all_devices"], frozen["max_case_s"])
    assert sweep.skip_slow_dtypes  # every preset skipped the dtypes without a fast path, as before


# --------------------------------------------------------------------------- a user's file


def _dry_run(capsys, *argv) -> list[str]:
    assert cli_main(["run", *argv, "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()[:-1]


def test_a_file_gives_the_cases_of_the_same_flags(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text('device = "cpu"\n\n[[grid]]\nwidth = [16, 32]\ndepth = 1\nbatch = 8\nactivation = ["relu", '
                    '"gelu"]\n\n[[grid]]  # a second grid\nnetwork = "teaching"\nbatch = 4\n')
    from_file = _dry_run(capsys, str(path))
    flags = _dry_run(capsys, "--width", "16,32", "--depth", "1", "--batch", "8", "--activation", "relu,gelu",
                     "--device", "cpu") + _dry_run(capsys, "--network", "teaching", "--batch", "4", "--device", "cpu")
    assert from_file == flags and len(from_file) == 5
    # the case flags override a dimension in every grid, as with a preset
    assert _dry_run(capsys, str(path), "--batch", "64") == _dry_run(
        capsys, "--width", "16,32", "--depth", "1", "--batch", "64", "--activation", "relu,gelu", "--device", "cpu"
    ) + _dry_run(capsys, "--network", "teaching", "--batch", "64", "--device", "cpu")


def test_top_level_case_fields_apply_to_every_grid_and_a_file_may_have_no_grid():
    spec = sweep_file.parse_sweep('batch = 8\n[[grid]]\nwidth = 16\n[[grid]]\nwidth = 32\nbatch = 4\n', "f", "f")
    assert spec.grids == ({"batch": (8,), "width": (16,)}, {"batch": (4,), "width": (32,)})
    flat = sweep_file.parse_sweep('width = [16, 32]\nbatch = 8\n', "f", "f")
    assert flat.grids == ({"width": (16, 32), "batch": (8,)},)


def test_every_case_field_is_a_key_of_a_grid():
    text = "[[grid]]\n" + "".join(f"{key} = {_a_value(key)}\n" for key in SWEEP_FIELDS)
    spec = sweep_file.parse_sweep(text, "f", "f")
    assert list(spec.grids[0]) == list(SWEEP_FIELDS)


def _a_value(key: str) -> str:
    from bench.model.case_fields import FIELD_DEFAULTS

    default = FIELD_DEFAULTS[key]
    return f'"{default}"' if isinstance(default, str) else repr(default)


def test_a_table_value_is_the_flags_spelling_of_its_items():
    spec = sweep_file.parse_sweep('[[grid]]\nloss = [{lr = 3e-4, betas = [0.9, 0.95], amsgrad = true}, "mse"]\n',
                                  "f", "f")
    assert spec.grids[0]["loss"] == ("lr=0.0003,betas=0.9:0.95,amsgrad=true", "mse")


def test_run_level_keys_and_no_limit_spellings():
    spec = sweep_file.parse_sweep('description = "d"\nall_devices = false\nmax_case_s = "inf"\nmax_run_s = 90\n'
                                  'repeats = 3\nmin_time_s = 0\nwarmup_s = 0.5\n[[grid]]\nwidth = 8\n', "f", "f")
    assert (spec.description, spec.all_devices, spec.max_case_s, spec.max_run_s, spec.repeats, spec.min_time_s,
            spec.warmup_s) == ("d", False, None, 90.0, 3, 0.0, 0.5)
    assert sweep_file.parse_sweep("max_case_s = inf\nwidth = 8\n", "f", "f").max_case_s is None


def test_key_lines_are_found_past_multiline_arrays_and_strings():
    text = ('description = """\n[[grid]]\nwidth = 1\n"""\n'  # 1-4: a multi-line string that looks like a grid
            'max_case_s = 5\n'  # 5
            '[[grid]]\n'  # 6
            'activation = [\n  ["nested"],\n  "gelu",\n]\n'  # 7-10: a multi-line array with a [ line
            '"depth" = 2\n'  # 11: a quoted key
            '\n[[grid]]  # second\n'  # 13
            'batch = 4\n')  # 14
    lines = sweep_file._KeyLines(text)  # noqa: SLF001 (the scanner, checked against a hand-numbered text)
    assert lines.line(("", 0), "max_case_s") == 5
    assert lines.line(("grid", 0)) == 6 and lines.line(("grid", 0), "activation") == 7
    assert lines.line(("grid", 0), "depth") == 11
    assert lines.line(("grid", 1)) == 13 and lines.line(("grid", 1), "batch") == 14
    assert lines.line(("grid", 0), "width") == 6  # not a key of that grid: its table's line


# --------------------------------------------------------------------------- bad input: one line, file:line, exit 2


@pytest.mark.parametrize("text, where, words", [
    # an unknown key (a typo), with the nearest valid one
    ('[[grid]]\nwidth = [16, 32]\nwidht = 3\n', ":3:", ["unknown key 'widht'", "did you mean 'width'"]),
    # a bad value: a Case refuses it, reported at its key's line
    ('# sweep\n[[grid]]\nwidth = 16\nactivation = [\n  "relu",\n  "relux",\n]\n', ":4:",
     ["activation", "unknown activation 'relux'"]),
    # a bad type
    ('[[grid]]\nwidth = "16"\n', ":2:", ["width", "expected an integer", "the string '16'"]),
    # a TOML syntax error (tomllib's own message and line)
    ('[[grid]]\nwidth = [16, 32\nbatch = 4\n', ":3:", ["TOML syntax error"]),
    # a run-level key inside a grid, a bad run-level value, an empty list, two values that cannot go together
    ('[[grid]]\nwidth = 16\nmax_case_s = 3\n', ":3:", ["'max_case_s'", "a run-level key"]),
    ('repeats = 0\n[[grid]]\nwidth = 16\n', ":1:", ["repeats", "must be >= 1"]),
    ('[[grid]]\nbatch = []\n', ":2:", ["batch", "empty list"]),
    ('[[grid]]\nwidth = 16\ndtype = "fp16"\n', ":3:", ["dtype", "needs device 'cuda'"]),
    ('[[grid]]\nwidth = 16\n[[grid]]\nwidth = 0\n', ":4:", ["width must be >= 1"]),
])
def test_a_bad_sweep_file_is_one_line_naming_file_line_and_key(tmp_path, capsys, text, where, words):
    path, out = tmp_path / "bad.toml", tmp_path / "out"
    path.write_text(text)
    assert cli_main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mlpbench: error: {path}{where}"), err
    assert all(word in err for word in words), err
    assert not out.exists()


def test_a_missing_sweep_file_is_one_line(tmp_path, capsys):
    assert cli_main(["run", str(tmp_path / "nope.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"mlpbench: error: {tmp_path / 'nope.toml'}: no such sweep file\n"
    assert cli_main(["run", "quick", "--dry-run"]) == 2  # a preset's name where a file goes: say the flag
    assert "--preset quick" in capsys.readouterr().err


def test_a_file_and_a_preset_together_are_refused(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("width = 8\n")
    assert cli_main(["run", str(path), "--preset", "smoke", "--dry-run"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli_main(["run", str(path), "--resume", str(tmp_path), "--dry-run"]) == 2
    assert "give no sweep file" in capsys.readouterr().err


def test_sweep_file_errors_are_usage_errors_with_the_source_named():
    with pytest.raises(UsageError, match=r"^src\.toml:1: the file declares no case"):
        sweep_file.parse_sweep("# nothing\n", "src.toml", "src")
    with pytest.raises(ValueError, match=r"^src\.toml:2: activation: unknown activation"):
        Sweep.of(sweep_file.parse_sweep("[[grid]]\nactivation = 'nope'\n", "src.toml", "src")).cases()


# --------------------------------------------------------------------------- one real run


def _instant_ceiling(device, dtype, sizes=None, budget_s=0.0):  # the matmul ceiling is not what is tested here
    return Ceiling(device, dtype, "stand-in", 0.1, 256, None, None, torch.get_num_threads(), (256,), budget_s, 0.0)


def test_a_files_budgets_reach_the_run_and_a_flag_wins_over_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", _instant_ceiling)
    path, out = tmp_path / "tiny.toml", tmp_path / "run"
    path.write_text('repeats = 2\nwarmup_s = 1.5\nmax_case_s = 25\n\n[[grid]]\nwidth = 8\ndepth = 1\nbatch = 4\n'
                    'device = "cpu"\n')
    assert cli_main(["run", str(path), "--warmup-s", "0", "--out", str(out), "--no-progress", "--no-show"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["timing_config"]["repeats"] == 2 and meta["timing_config"]["max_case_s"] == 25  # the file's
    assert meta["timing_config"]["warmup_s"] == 0  # the flag's
    assert meta["preset"] == "tiny" and meta["sweep_file"] == str(path)
    samples = (out / "samples.csv").read_text().splitlines()
    assert sum(1 for row in samples[1:] if ",step," in row) == 2  # two samples of the step: repeats = 2


@pytest.mark.parametrize("path", sorted((REPO / "docs" / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_the_documented_example_sweeps_are_valid(path):
    sweep = Sweep.of(sweep_file.load_sweep_file(path))
    assert sweep.cases() and sweep.name == path.stem


def test_a_relative_model_path_is_read_beside_the_sweep_file(tmp_path, monkeypatch):
    """``model = "./blocks.py:make"`` names the file beside the sweep file, whatever the cwd; a module name is
    left as written (imported from the cwd, as the flag's is)."""
    from bench.case import plugin

    folder = tmp_path / "repo" / "sweeps"
    folder.mkdir(parents=True)
    (folder / "blocks.py").write_text("import torch\n\ndef make(width):\n"
                                      "    return torch.nn.Sequential(torch.nn.Linear(width, 7))\n")
    path = folder / "ci.toml"
    path.write_text('[[grid]]\nmodel = ["./blocks.py:make", "pkg.blocks:make"]\nwidth = 16\n')
    for cwd, expected in ((tmp_path / "repo", "sweeps/blocks.py:make"), (folder, "blocks.py:make"),
                          (tmp_path / "elsewhere", f"{(folder / 'blocks.py').resolve()}:make")):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        assert sweep_file.load_sweep_file(path).grids[0]["model"] == (expected, "pkg.blocks:make")
    module = plugin.resolve(expected).target(width=16)
    assert [m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)] == [7]
