"""bench.cases: validation of a Case and what the presets cover."""

from __future__ import annotations

import pytest

from bench.cases import PRESETS, Case


# --------------------------------------------------------------------------- cases and sweeps


def test_case_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="width must be >= 1"):
        Case(width=0)
    with pytest.raises(ValueError, match="unknown activation 'nope'.*relu"):
        Case(activation="nope")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'.*reduce-overhead"):
        Case(compile="fast")
    with pytest.raises(ValueError, match="fp16.*cuda"):
        Case(dtype="fp16")


def test_named_networks_normalise_their_fixed_fields():
    a = Case(network="fashion_mnist", width=999, activation="gelu", loss="mse")
    b = Case(network="fashion_mnist")
    assert a == b and a.loss == "cross_entropy" and a.case_id == b.case_id


def test_quick_preset_covers_every_dimension_twice():
    cases = PRESETS["quick"].cases()
    uniform = [c for c in cases if c.network == "uniform"]
    assert len({c.width for c in uniform}) >= 3 and len({c.batch for c in uniform}) >= 3
    assert len({c.activation for c in uniform}) >= 3 and len({c.depth for c in uniform}) >= 2
    assert {c.dtype for c in cases} >= {"fp32", "bf16"} and {c.compile for c in cases} >= {"none", "default"}
    assert {"teaching", "fashion_mnist"} <= {c.network for c in cases}


def test_typed_views_give_the_enums_of_the_string_fields():
    from bench.cases import CompileMode

    eager, compiled = Case(), Case(compile="reduce_overhead")
    assert eager.compile_mode is CompileMode.NONE and not eager.compiled and eager.to_row()["compile"] == "none"
    assert compiled.compile_mode is CompileMode.REDUCE_OVERHEAD and compiled.compiled
    assert not compiled.cuda_graphs  # CUDA graphs are a CUDA matter
    assert compiled.with_(device="cuda").cuda_graphs and not Case(device="cuda", compile="default").cuda_graphs
