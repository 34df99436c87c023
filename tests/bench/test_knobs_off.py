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

