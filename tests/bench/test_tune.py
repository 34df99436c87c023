"""``mlpbench tune``: its plan (which knobs, in which order, what cannot run here), its command line, and
(e2e) a real tune on the CPU, plus the whole-step compiled case: one compile, its rows and its correctness."""

from __future__ import annotations

import csv
import math
import shlex

import pytest
import torch

import mlp
from bench.commands import tune
from bench.report.tune import CONFIRM_FILE
from bench.case.cases import Case, Sweep
from bench.cli import main as cli_main
from bench.model.phases import Phase
from bench.runs import load_run
from bench.instruments.timing import TimingConfig, measure


def _labels(plan):
    return [label for label, _ in plan.chain]


def test_the_cpu_bf16_relu_plan_adds_every_knob_but_the_cuda_graph():
    plan = tune.plan_tune(Case(width=32, depth=1, batch=16, dtype="bf16"))
    assert _labels(plan) == ["eager", "+ bf16 params", "+ fused epilogue", "+ compile model", "+ compile step"]
    assert [k for k, _ in plan.skipped] == ["CUDA graph step"] and "cuda" in plan.skipped[0][1].lower()
    last = plan.chain[-1][1]
    assert (last.param_dtype, last.epilogue, last.compile, last.compile_scope) == ("compute", "fused", "default",
                                                                                   "step")
    # every on/off combination of the four knobs, less the step scope without a compile mode: 16 - 4
    assert len(set(plan.cases)) == len(plan.cases) == 12
    assert all(c.cuda_graph == "none" for c in plan.cases)


def test_knobs_that_do_not_apply_are_skipped_with_their_reason():
    plan = tune.plan_tune(Case(width=32, depth=1, batch=16, activation="gelu"))  # fp32, GELU
    skipped = dict(plan.skipped)
    assert "no lower compute dtype" in skipped["bf16 params"]
    assert "relu" in skipped["fused epilogue"]
    assert _labels(plan) == ["eager", "+ compile model", "+ compile step"]


def test_moot_knobs_read_as_their_defaults_so_grids_collapse():
    assert Case(compile_scope="step") == Case() and Case(param_dtype="compute") == Case()
    grid = Sweep("g", ({"compile": ("none", "default"), "compile_scope": ("model", "step")},)).cases()
    assert [(c.compile, c.compile_scope) for c in grid] == [("none", "model"), ("default", "model"),
                                                            ("default", "step")]


def test_a_user_knob_flag_is_reset_to_eager_for_the_base():
    plan = tune.plan_tune(Case(width=32, depth=1, dtype="bf16", param_dtype="compute", epilogue="fused"))
    assert plan.base.param_dtype == "fp32" and plan.base.epilogue == "none"


def test_the_chains_are_measured_by_position_before_any_other_combination():
    plans = [tune.plan_tune(Case(width=w, depth=1, batch=16, dtype="bf16")) for w in (16, 32)]
    order = tune.measuring_order(plans)
    assert order[:2] == [plans[0].chain[0][1], plans[1].chain[0][1]]  # both eager cases first
    chain_cases = {c for p in plans for _, c in p.chain}
    assert set(order[:len(chain_cases)]) == chain_cases


@pytest.mark.parametrize("argv,message", [
    (["tune", "--param-dtype", "compute"], "tune varies --param-dtype"),
    (["tune", "--compile", "none"], "one compile mode"),
    (["run", "--cuda-graph", "step", "--dry-run"], "cuda"),
    (["run", "--epilogue", "fused", "--activation", "gelu", "--dry-run"], "relu"),
])
def test_bad_knob_input_is_a_one_line_usage_error(argv, message, capsys, tmp_path):
    assert cli_main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- end to end (slow: real runs)


@pytest.mark.e2e
def test_tune_writes_its_run_figure_and_a_command_that_reproduces_a_measured_case(tmp_path, capsys):
    """A budget that leaves no room for a cold compile: the eager knobs are measured, the compiled ones are
    skipped with 'run budget'; the printed command re-measures the fastest case of the run."""
    out = tmp_path / "tune"
    argv = ["--width", "32", "--depth", "1", "--batch", "16", "--dtype", "bf16", "--threads", "1"]
    assert cli_main(["tune", *argv, "--repeats", "3", "--warmup-s", "0.02", "--max-run-s", "25",
                     "--no-progress", "--no-confirm", "--out", str(out)]) == 0  # the confirmation: e2e below
    text = capsys.readouterr().out
    assert (out / "plots" / "tune.png").stat().st_size > 0 and (out / "tune.md").exists()
    run = load_run(out)
    steps = run.summary[run.summary["phase"] == "step"]
    ok = steps[steps["status"] == "ok"]
    assert {"compute", "fp32"} <= set(ok["param_dtype"]) and "fused" in set(ok["epilogue"])
    assert all(r.startswith("run budget") for r in steps[steps["compile"] != "none"]["reason"])
    best = ok.loc[ok["median_s"].idxmin()]
    command = next(line for line in text.splitlines() if "reproduce it:" in line).split("`")[1]
    again = tmp_path / "again"
    flags = shlex.split(command)[2:]  # drop 'mlpbench run'
    assert cli_main(["run", *flags, "--repeats", "3", "--out", str(again), "--no-progress", "--no-show"]) == 0
    rerun = load_run(again).summary
    assert list(rerun[rerun["phase"] == "step"]["case_id"]) == [best["case_id"]]


@pytest.mark.e2e
def test_a_whole_step_compiled_case_times_the_step_alone_and_trains_like_eager_fp32():
    """One cold compile: the engine's rows (the step only, with the reason) and 20 steps against eager fp32."""
    case = Case(width=16, depth=1, batch=8, compile="default", compile_scope="step", threads=1)
    m = measure(case, TimingConfig(repeats=3, warmup_s=0.01, min_block_s=0.005))
    assert set(m.samples) == {Phase.STEP} and "compiled function" in m.untimed_phases
    assert m.compile_graphs >= 2  # the forward + loss graph, and the optimiser's (backward is a graph break)

    from tests.mlp.test_knobs import _fixed_data, _net, _reference, _start, update_error  # noqa: PLC0415

    torch._dynamo.reset()
    step = mlp.TrainStep(_net(), knobs=mlp.StepKnobs(compile_mode="default", compile_step=True))
    assert step.optimizer_impl == "foreach"
    x, y = _fixed_data()
    for _ in range(20):
        step.step(x, y)
    weights = [p.detach().float() for p in step.model.parameters()]
    assert update_error(weights, _reference(_net(), x, y), _start()) < 1e-4  # fp32, another op order
    assert math.isfinite(m.first_step_s)


def test_the_run_folder_records_the_knobs(tmp_path, monkeypatch):
    """A bf16-parameter, fused-epilogue case: its fields are columns of summary.csv and its label says so."""
    from bench.engine import runner
    from bench.limits.ceiling import Ceiling
    from bench.engine.runner import run_sweep

    def fake_ceiling(device, dtype, sizes=None, budget_s=None):  # the limits are not what this test is about
        return Ceiling(device, dtype, "fake cpu", 1.0, 256, None, "test", torch.get_num_threads(), (256,), 1.0, 0.0)

    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", fake_ceiling)
    monkeypatch.setattr(runner, "measure_case_shapes", lambda ceiling, *args: ceiling)

    case = Case(width=8, depth=1, batch=4, dtype="bf16", param_dtype="compute", epilogue="fused", threads=1)
    config = TimingConfig(repeats=1, warmup_s=0.0, min_warmup_iters=1, min_block_s=0.001)
    fake = lambda c, cfg, on_predict=None: measure(c, cfg)  # noqa: E731 - the real engine, no telemetry
    run_sweep([case], tmp_path / "run", config, progress=False, measure_fn=fake)
    rows = list(csv.DictReader((tmp_path / "run" / "summary.csv").open()))
    assert {r["param_dtype"] for r in rows} == {"compute"} and {r["epilogue"] for r in rows} == {"fused"}
    assert "params:bf16 fused-epilogue" in rows[0]["label"]
    assert Case.from_row(rows[0]) == case


def test_the_report_picks_the_fastest_measured_case_and_the_bound_that_names_its_share(tmp_path):
    """A made-up plan and step rows: the fastest is the least median among ok rows (pandas' own idxmin), the
    share is MFU for a compute-bound eager case and the speed-of-light fraction otherwise, the figure is drawn."""
    import pandas as pd

    from bench.report.tune import results, tune_report
    from bench.runs import Run, RunMeta

    plan = tune.plan_tune(Case(width=32, depth=1, batch=16, dtype="bf16"))
    medians = [4e-3, 3e-3, 2.5e-3, 1e-3, 2e-3] + [5e-3] * (len(plan.cases) - 5)
    rows = [{"case_id": c.case_id, "label": c.label, "phase": "step", "status": "ok", "reason": "",
             "median_s": t, "mfu": 0.1 * i, "sol_fraction": 0.01 * i, "sol_bound": "memory"}
            for i, (c, t) in enumerate(zip(plan.cases, medians))]
    rows[2]["status"], rows[2]["median_s"] = "error", 1e-6  # a failed case never wins
    summary = pd.DataFrame(rows)
    for bound, share_name in (("memory", "SoL"), ("compute", "MFU")):
        summary.loc[0, "sol_bound"] = bound
        run = Run(tmp_path, summary, pd.DataFrame(), RunMeta(extra={"tune": [plan.as_dict()]}))
        (result,) = results(run)
        ok = summary[summary["status"] == "ok"]
        assert result.best.case_id == ok.loc[ok["median_s"].idxmin(), "case_id"] == plan.chain[3][1].case_id
        assert result.share_name == share_name
        assert result.best.share == pytest.approx(0.3 if share_name == "MFU" else 0.03)
    text = tune_report(run, tmp_path)
    assert f"`mlpbench run {plan.chain[3][1].cli_flags()}`" in text
    assert (tmp_path / "plots" / "tune.png").stat().st_size > 0


@pytest.mark.e2e
def test_the_confirmed_best_reproduces_within_noise_when_re_measured_interleaved(tmp_path, capsys):
    """tune's finalists are re-measured against eager interleaved; its printed command, measured again against
    eager in a second interleaved measurement (bench.commands.compare, the gate's workers), gives a speedup whose interval
    overlaps the one tune reported: the claim is a ratio that survives the machine's drift, not a time."""
    import json

    from bench.commands import compare as confirm
    from bench.gate.ab import tree_root

    out = tmp_path / "tune"
    argv = ["--width", "64", "--depth", "2", "--batch", "64", "--dtype", "bf16", "--threads", "1"]
    assert cli_main(["tune", *argv, "--repeats", "3", "--warmup-s", "0.02", "--max-run-s", "30",
                     "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    (entry,) = json.loads((out / CONFIRM_FILE).read_text())
    assert len(entry["finalists"]) == tune.FINALISTS and "Finalists against eager, interleaved (" in text
    for f in entry["finalists"]:
        assert f["ci_low"] <= f["ratio"] <= f["ci_high"] and f["eager_s"] > 0 and f["median_s"] > 0
    command = next(line for line in text.splitlines() if "reproduce it:" in line).split("`")[1]
    run = load_run(out)
    summary = run.summary
    (plan,) = run.meta["tune"]
    best_id = next(cid for cid, flags in plan["flags"].items() if command == f"mlpbench run {flags}")
    eager_id = entry["base"]
    if best_id == eager_id:  # no knob beat eager: the claim is that none is faster
        assert all(f["verdict"] != "improvement" for f in entry["finalists"])
        return
    claim = next(f for f in entry["finalists"] if f["case_id"] == best_id)
    row = lambda cid: confirm.case_row(summary, cid)  # noqa: E731
    (again,) = confirm.interleaved([row(eager_id)], [row(best_id)], tree_root(), tree_root())
    assert again.ci_low <= claim["ci_high"] and claim["ci_low"] <= again.ci_high, (claim, again)



def test_the_recommendation_follows_the_interleaved_verdict_not_the_screening_median(tmp_path):
    """Screening medians from cases measured minutes apart say case 3 is fastest; the interleaved re-measurement
    says case 1 is faster than eager beyond noise and case 3 is not: case 1 is recommended. With no finalist
    faster, eager is."""
    import json

    import pandas as pd

    from bench.report.tune import results, tune_report
    from bench.runs import Run, RunMeta

    plan = tune.plan_tune(Case(width=32, depth=1, batch=16, dtype="bf16"))
    medians = [4e-3, 3e-3, 2.5e-3, 1e-3] + [5e-3] * (len(plan.cases) - 4)
    rows = [{"case_id": c.case_id, "label": c.label, "phase": "step", "status": "ok", "reason": "",
             "median_s": t, "mfu": 0.1, "sol_fraction": 0.1, "sol_bound": "memory"}
            for c, t in zip(plan.cases, medians)]
    run = Run(tmp_path, pd.DataFrame(rows), pd.DataFrame(), RunMeta(extra={"tune": [plan.as_dict()]}))
    one, three = plan.cases[1].case_id, plan.cases[3].case_id

    def confirmed(verdict_one: str, verdict_three: str) -> None:
        finalists = [{"case_id": cid, "ratio": ratio, "ci_low": ratio * 0.95, "ci_high": ratio * 1.05,
                      "verdict": verdict, "eager_s": 4e-3, "median_s": 4e-3 * ratio, "confidence": 0.99, "rounds": 20}
                     for cid, ratio, verdict in ((three, 0.97, verdict_three), (one, 0.8, verdict_one))]
        (tmp_path / CONFIRM_FILE).write_text(json.dumps([{"base": plan.base.case_id, "finalists": finalists}]))

    confirmed("improvement", "pass")
    (result,) = results(run)
    assert result.best.case_id == one
    text = tune_report(run, tmp_path)
    assert f"`mlpbench run {plan.cases[1].cli_flags()}`" in text and "1.25x eager [1.19, 1.32] interleaved" in text
    confirmed("pass", "pass")
    (result,) = results(run)
    assert result.best.case_id == plan.base.case_id
    assert "no knob was faster than eager beyond noise" in tune_report(run, tmp_path)
    (tmp_path / CONFIRM_FILE).unlink()  # --no-confirm: the screening pass alone
    (result,) = results(run)
    assert result.best.case_id == three


def test_a_sweep_file_s_cases_are_the_bases_reset_to_eager_and_listed_once(tmp_path):
    """Every case of the file is a base; a knob it sets is reset (tune varies the knobs itself), so a compiled and
    an eager grid of the same case are one base, and the file's budgets become tune's."""
    from bench.case.cases import sweep_from_file

    path = tmp_path / "ffn.toml"
    path.write_text('all_devices = false\nmax_run_s = 90\n\n[[grid]]\nnetwork = "ffn"\nwidth = [32, 64]\n'
                    'batch = 16\n\n[[grid]]\nnetwork = "ffn"\nwidth = 32\nbatch = 16\ncompile = "default"\n')
    bases = tune.base_cases({"threads": (1,)}, sweep_from_file(path))
    assert bases == [Case(network="ffn", width=w, batch=16, threads=1) for w in (32, 64)]
    assert all(tune.plan_tune(b).base == b for b in bases)


def test_a_bad_sweep_file_is_one_line_naming_the_file_and_nothing_runs(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[[grid]]\nwidht = 32\n')
    assert cli_main(["tune", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.toml" in err and "widht" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _numerics_run(tmp_path, exact: bool = False):
    """A made-up bf16 plan: bf16 parameters fastest in the screening and confirmed faster interleaved, beyond
    their numerics tolerance (weights); the fused epilogue confirmed faster too, within it; compile model
    indistinguishable; compile step slower."""
    import json

    import pandas as pd

    from bench.runs import Run, RunMeta

    plan = tune.plan_tune(Case(width=32, depth=1, batch=16, dtype="bf16"))
    plan.exact = exact
    labels = dict((case.case_id, label) for label, case in plan.chain)
    by_label = {label: case.case_id for label, case in plan.chain}
    medians = {by_label["eager"]: 4e-3, by_label["+ bf16 params"]: 2e-3, by_label["+ fused epilogue"]: 2.5e-3,
               by_label["+ compile model"]: 3.9e-3, by_label["+ compile step"]: 3.0e-3}
    within = next(c for c in plan.others  # a combination without bf16 parameters: the fused epilogue alone
                  if c.param_dtype == "fp32" and c.epilogue == "fused" and not c.compiled)
    medians[within.case_id] = 2.2e-3
    beyond = "beyond tolerance: weights after 5 steps 0.96 > 0.11"
    rows = []
    for case in plan.cases:
        flagged = case.param_dtype == "compute"
        rows.append({"case_id": case.case_id, "label": case.label, "phase": "step", "status": "ok", "reason": "",
                     "median_s": medians.get(case.case_id, 5e-3), "mfu": 0.1, "sol_fraction": 0.1,
                     "sol_bound": "memory", "grad_rel_err": 0.056, "numerics_tol": 0.11,
                     "numerics": beyond if flagged else ""})
    rows.append({**rows[0], "case_id": "x"})  # a stray row of another plan is never read
    finalists = [(by_label["+ bf16 params"], 0.5, "improvement"), (within.case_id, 0.8, "improvement"),
                 (by_label["+ compile model"], 0.97, "pass"), (by_label["+ compile step"], 1.3, "regression")]
    (tmp_path / CONFIRM_FILE).write_text(json.dumps([{"base": plan.base.case_id, "finalists": [
        {"case_id": cid, "ratio": r, "ci_low": r * 0.95, "ci_high": r * 1.05, "verdict": v, "eager_s": 6e-3,
         "median_s": 6e-3 * r, "confidence": 0.99, "rounds": 20} for cid, r, v in finalists]}]))
    return Run(tmp_path, pd.DataFrame(rows), pd.DataFrame(), RunMeta(extra={"tune": [plan.as_dict()]})), plan, \
        labels, within


def test_a_recommendation_beyond_numerics_tolerance_says_so_on_its_line_and_exact_keeps_within(tmp_path):
    from bench.report.tune import results, tune_report

    run, plan, labels, within = _numerics_run(tmp_path)
    (result,) = results(run)
    assert result.best.case_id == plan.chain[1][1].case_id  # bf16 params: the fastest confirmed
    line = next(l for l in tune_report(run, tmp_path).splitlines() if l.startswith("- fastest"))
    assert "2.00x eager" in line and "NUMERICS beyond tolerance: weights after 5 steps 0.96 > 0.11" in line
    assert "--exact" in tune_report(run, tmp_path)
    run, plan, labels, within = _numerics_run(tmp_path, exact=True)
    (result,) = results(run)
    assert result.best.case_id == within.case_id  # the fastest confirmed knob within tolerance
    line = next(l for l in tune_report(run, tmp_path).splitlines() if l.startswith("- fastest"))
    assert line.startswith("- fastest within its numerics tolerance:") and "1.25x eager" in line
    assert "NUMERICS" not in line and "numerics within tolerance of fp32 eager" in line


def test_exact_finalists_are_chosen_among_the_knobs_within_tolerance(tmp_path):
    run, plan, _, within = _numerics_run(tmp_path)
    assert plan.chain[1][1].case_id in tune.finalists(run.summary, plan)
    plan.exact = True
    chosen = tune.finalists(run.summary, plan)
    flagged = set(run.summary.loc[run.summary["numerics"] != "", "case_id"])
    assert not flagged & set(chosen) and within.case_id in chosen


def test_the_waterfall_colours_only_the_gains_the_interleaved_check_confirmed(tmp_path):
    """Each chain bar's colour is its interleaved verdict: confirmed faster green, confirmed slower red,
    indistinguishable grey, never re-measured grey (a screening median that reads faster confirms nothing)."""
    from bench.report import tune as report

    run, plan, labels, _ = _numerics_run(tmp_path)
    (result,) = report.results(run)
    colours = {b.label: report.bar_colour(result, b, i == 0) for i, b in enumerate(result.bars)}
    assert colours == {"eager": report.EAGER_COLOUR, "+ bf16 params": report.FASTER_COLOUR,
                       "+ fused epilogue": report.UNCONFIRMED_COLOUR,  # 1.6x in the screening, not re-measured
                       "+ compile model": report.UNCONFIRMED_COLOUR,  # indistinguishable interleaved
                       "+ compile step": report.SLOWER_COLOUR}
    (tmp_path / CONFIRM_FILE).unlink()  # --no-confirm: nothing is confirmed, every knob bar grey
    (result,) = report.results(run)
    assert {report.bar_colour(result, b, False) for b in result.bars[1:]} == {report.UNCONFIRMED_COLOUR}


def test_the_output_says_why_the_two_passes_read_different_times_and_which_to_trust(tmp_path):
    from bench.report.tune import tune_report

    run, *_ = _numerics_run(tmp_path)
    text = tune_report(run, tmp_path)
    line = next(l for l in text.splitlines() if l.startswith("- The two passes measure differently"))
    assert "eager read 4 ms in the screening pass and 6 ms in the interleaved check (1.50x)" in line
    assert "Trust the interleaved speedups" in line
