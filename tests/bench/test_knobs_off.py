"""The knobs-off case is defined once (issue 48): ``KNOBS_OFF`` and ``GRAPHS_OFF`` in bench.model.case_fields.

References: ``mlp.StepKnobs()``, the step's own defaults (the plain eager step with fp32 master weights), and
the hand spellings the five call sites used before (frozen here from main at the move).
"""

import dataclasses

import mlp
from bench.case.cases import Case
from bench.model.case_fields import GRAPHS_OFF, KNOB_FIELDS, KNOBS_OFF

# As tune.py, runner.py, plugin.py, numerics.py and profile/accounting.py spelt them by hand before.
HAND_KNOBS_OFF = {"compile": "none", "compile_scope": "model", "cuda_graph": "none", "param_dtype": "fp32",
                  "epilogue": "none"}
HAND_GRAPHS_OFF = {"compile": "none", "compile_scope": "model", "cuda_graph": "none"}


def test_knobs_off_is_the_hand_spelling():
    assert KNOBS_OFF == HAND_KNOBS_OFF and GRAPHS_OFF == HAND_GRAPHS_OFF
    assert tuple(KNOBS_OFF) == KNOB_FIELDS


def test_knobs_off_builds_mlps_own_default_step():
    tuned = Case(compile="default", compile_scope="step", cuda_graph="none", param_dtype="compute",
                 epilogue="fused", dtype="bf16")
    assert tuned.knobs != mlp.StepKnobs()
    assert dataclasses.asdict(tuned.with_(**KNOBS_OFF).knobs) == dataclasses.asdict(mlp.StepKnobs())
    eager = tuned.with_(**GRAPHS_OFF).knobs  # the graph knobs off, the eager ones kept
    assert eager.compile_mode is None and not eager.compile_step and not eager.cuda_graph
    assert eager.param_dtype == mlp.ParamDtype.COMPUTE and eager.epilogue == mlp.Epilogue.FUSED


def test_tunes_chain_is_declared_beside_the_fields():
    """tune's chain as it was spelt by hand at the move (label, the field it sets, the value), cheapest first."""
    from bench.commands.tune import CHAIN

    assert [(k.name, k.changes) for k in CHAIN] == [
        ("bf16 params", {"param_dtype": "compute"}), ("fused epilogue", {"epilogue": "fused"}),
        ("CUDA graph step", {"cuda_graph": "step"}), ("compile model", {"compile": "default"}),
        ("compile step", {"compile_scope": "step"})]



def _hand_step_knobs(case: Case) -> dict:
    """``Case.knobs`` as cases.py spelt it by hand before each knob declared its own step arguments."""
    return dataclasses.asdict(mlp.StepKnobs(
        compile_mode=case.compile if case.compile != "none" else None, compile_step=case.compile_scope == "step",
        cuda_graph=case.cuda_graph == "step", param_dtype=case.param_dtype, epilogue=case.epilogue))


def test_each_knob_reaches_the_step_as_the_hand_mapping_did():
    import itertools

    values = {"compile": ["none", "default", "max-autotune"], "compile_scope": ["model", "step"],
              "cuda_graph": ["none", "step"], "param_dtype": ["fp32", "compute"], "epilogue": ["none", "fused"]}
    assert set(values) == set(KNOB_FIELDS)
    built = 0
    for combo in itertools.product(*values.values()):
        fields = dict(zip(values, combo))
        if fields["compile_scope"] == "step" and fields["compile"] == "none":
            continue  # StepKnobs refuses it (a compile scope needs a compile mode)
        if fields["cuda_graph"] == "step" and fields["compile"] == "max-autotune":
            continue  # Case refuses it (that mode captures CUDA graphs itself)
        case = Case(dtype="bf16", device="cuda", **fields)  # a CUDA graph needs a CUDA case (only built, not run)
        assert dataclasses.asdict(case.knobs) == _hand_step_knobs(case), fields
        built += 1
    assert built == 2 * 2 * ((3 * 2 - 1) + (3 * 2 - 1 - 2))


def test_a_graph_knob_away_from_its_default_charges_no_dispatch():
    """speed_of_light's graph rule, against the hand dict it replaced: compile or cuda_graph away from 'none'."""
    from bench.limits.speed_of_light import charged_ops

    hand = {"compile": "none", "cuda_graph": "none"}
    rows = [{"aten_ops": 40.0}, {"aten_ops": 40.0, "compile": float("nan"), "compile_scope": float("nan")},
            {"aten_ops": 40.0, "compile": "default"}, {"aten_ops": 40.0, "cuda_graph": "step"},
            {"aten_ops": 40.0, "compile": "default", "compile_scope": "step"}, {"aten_ops": 40.0, "epilogue": "fused"}]
    for row in rows:
        graph = any(isinstance(row.get(k), str) and row[k] != v for k, v in hand.items())
        assert charged_ops(row) == (0.0 if graph else 40.0), row


# Labels and whole_step as the hand-written Case.label / Case.whole_step gave them (frozen from main before each knob
# declared its own label tag and whole-step flag).
FROZEN = [
    (dict(device="cpu"), "w256 d2 relu b64 cpu bf16 eager", False),
    (dict(device="cuda", cuda_graph="step", epilogue="fused"),
     "w256 d2 relu b64 cuda bf16 eager graph:step fused-epilogue", True),
    (dict(device="cpu", param_dtype="compute", epilogue="fused"),
     "w256 d2 relu b64 cpu bf16 eager params:bf16 fused-epilogue", False),
    (dict(device="cuda", compile="default", epilogue="fused"), "w256 d2 relu b64 cuda bf16 compile:default fused-epilogue",
     False),
    (dict(device="cpu", compile="default", compile_scope="step"), "w256 d2 relu b64 cpu bf16 compile:default:step", True),
    (dict(device="cuda", compile="default", compile_scope="step", cuda_graph="step", epilogue="fused"),
     "w256 d2 relu b64 cuda bf16 compile:default:step graph:step fused-epilogue", True),
    (dict(device="cuda", compile="reduce-overhead", compile_scope="step", param_dtype="compute", epilogue="fused"),
     "w256 d2 relu b64 cuda bf16 compile:reduce-overhead:step params:bf16 fused-epilogue", True),
]


def test_labels_and_whole_step_as_the_hand_spelling_gave_them():
    for fields, label, whole_step in FROZEN:
        case = Case(dtype="bf16", **fields)
        assert (case.label, case.whole_step) == (label, whole_step), fields
