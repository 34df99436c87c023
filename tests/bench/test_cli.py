"""bench.cli: bad input is one line and exit code 2 before anything is measured; dry runs; python -m bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.case.cases import PRESETS
from bench.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv, message", [
    (["run", "--batch", "12,abc"], "'abc' is not an integer"),
    (["run", "--width", "0"], "width must be >= 1"),
    (["run", "--activation", "swishy"], "unknown activation 'swishy'"),
    (["run", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "--batch", "8,,16"], "malformed list"),
    (["run", "--repeats", "0"], "repeats must be >= 1"),
    (["run", "--max-case-s", "0"], "--max-case-s: '0' is not a positive number of seconds"),
    (["run", "--max-case-s", "-1"], "--max-case-s: '-1' is not a positive number of seconds"),
    (["run", "--max-case-s", "abc"], "--max-case-s: 'abc' is not a positive number of seconds"),
    (["run", "--max-case-s", "nan"], "--max-case-s: 'nan' is not a positive number of seconds"),
    (["show", "/nonexistent/run"], "no run folder"),
])
def test_bad_cli_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = cli_main(argv + (["--out", str(out)] if argv[0] == "run" else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mlpbench: error:") and message in err
    assert not out.exists()


def test_dry_run_lists_cases_and_measures_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["run", "--preset", "quick", "--device", "cpu", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{len(PRESETS['quick'].cases())} cases (dry run" in text and not out.exists()


def test_console_entry_point_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--list-presets"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "quick" in proc.stdout and "smoke" in proc.stdout


@pytest.mark.parametrize("place", ["under-a-file", "proc"])
def test_an_unwritable_out_folder_is_a_usage_error_before_measuring(tmp_path, capsys, monkeypatch, place):
    if place == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc on this system")
        out = Path("/proc/x")  # procfs refuses new entries, even to root
    else:
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "run"  # a folder cannot live under a regular file, even for root
    from bench.engine import runner

    def must_not_measure(*args, **kwargs):
        raise AssertionError("measuring started before the output folder was checked")

    monkeypatch.setattr(runner, "run_sweep", must_not_measure)
    code = cli_main(["run", "--width", "32", "--depth", "1", "--batch", "8", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mlpbench: error: ") and str(out) in err, err
    assert "internal error" not in err


# --------------------------------------------------------------------------- the first ten minutes

HELP_PROBE = """
import contextlib, io, sys
from bench.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "pandas", "scipy", "numpy") if m in sys.modules)
print(out.getvalue() + "IMPORTED:" + ",".join(heavy))
"""


@pytest.mark.parametrize("argv, allowed", [(["--help"], ""), (["run", "--help"], ""), (["tune", "--help"], ""),
                                           (["compare", "--help"], "numpy")])
def test_help_imports_no_torch_nor_the_data_stack(argv, allowed):
    """`mlpbench --help` took 4-5 s: every command module (torch, pandas, scipy) was imported to build the parser;
    `compare --help` took 4.6 s (pandas, scipy): now 0.2 s."""
    proc = subprocess.run([sys.executable, "-c", HELP_PROBE, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    text, imported = proc.stdout.rsplit("IMPORTED:", 1)
    assert imported.strip() == allowed, imported
    assert "usage: mlpbench" in text


def test_every_case_flag_and_the_preset_flag_list_their_valid_values(capsys):
    import mlp
    from bench.case.cases import Device
    from bench.commands.case_flags import CASE_FLAGS, OPTION_FLAGS, WHOLE_FLAGS

    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in CASE_FLAGS:
        # key=value options, a shape (--input-shape 1,28,28 is one value), or a comma list
        metavar = "OPTIONS" if flag in OPTION_FLAGS else "SHAPE" if flag in WHOLE_FLAGS else "LIST"
        assert f"--{flag} {metavar} " in text and f"--{flag} {metavar} --" not in text, flag  # each has help
    for values in (tuple(mlp.ACTIVATIONS), [m.value for m in mlp.Precision], [m.value for m in mlp.Optimizer],
                   [m.value for m in mlp.Loss], [m.value for m in Device]):
        assert ", ".join(values) in text
    for name in PRESETS:  # every shipped preset, not four of them
        assert name in text.rsplit("--preset NAME", 1)[1].split("--out OUT", 1)[0], name


def test_show_without_runs_names_a_command_a_pip_user_has(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`mlpbench run`" in err, err
