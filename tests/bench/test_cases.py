"""bench.case.cases: validation of a Case and what the presets cover."""

from __future__ import annotations

import pytest

from bench.case.cases import PRESETS, Case


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
    from bench.case.cases import CompileMode

    eager, compiled = Case(), Case(compile="reduce_overhead")
    assert eager.compile_mode is CompileMode.NONE and not eager.compiled and eager.to_row()["compile"] == "none"
    assert compiled.compile_mode is CompileMode.REDUCE_OVERHEAD and compiled.compiled
    assert not compiled.cuda_graphs  # CUDA graphs are a CUDA matter
    assert compiled.with_(device="cuda").cuda_graphs and not Case(device="cuda", compile="default").cuda_graphs


# Case ids recorded in the committed reference runs (results/reference/cpu-2core/*/summary.csv),
# copied here as literals: an id is the key that joins runs, baselines and history across versions,
# so a change of the hash, of a field's normal form or of which fields enter it must fail here.
RECORDED_CASE_IDS = [
    (dict(width=128, depth=2, batch=16, threads=1), "f27723a7dba5"),  # quick
    (dict(width=128, depth=2, batch=16, dtype="bf16", threads=1), "062d32e62140"),
    (dict(width=1024, depth=2, batch=1024, threads=1), "0701e2f8501f"),
    (dict(width=512, depth=2, batch=128, activation="binary_step", threads=1), "93a46eec1511"),
    (dict(width=512, depth=2, batch=128, activation="gelu", threads=1), "f591e8f9f215"),
    (dict(width=512, depth=2, batch=16, compile="default", threads=1), "15d35304e0e1"),
    (dict(network="teaching", batch=4, threads=1), "14a6d0d1ac2b"),
    (dict(network="fashion_mnist", batch=64, threads=1), "4921ec98d5e6"),
    (dict(network="fashion_mnist_original", batch=64, threads=1), "cbd8d3ede63f"),  # classic
    (dict(network="teaching", batch=64, optimizer="adam", threads=1), "6b65334783cb"),
    (dict(network="fashion_mnist", batch=64, optimizer="sgd_momentum", threads=1), "28e984c4a7dc"),
    (dict(width=1024, depth=4, batch=64, threads=1), "d40cdc960541"),  # ddp-w1024-d4-b64
    (dict(width=1024, depth=4, batch=64, threads=1, world_size=2, backend="gloo", scaling="weak",
          bucket_cap_mb=25.0), "05feef32fb0f"),
    (dict(width=1024, depth=4, batch=32, threads=1, world_size=2, backend="gloo", scaling="strong",
          bucket_cap_mb=25.0), "e14b04fa1bb6"),
    (dict(network="fashion_mnist", batch=64, threads=1, world_size=2, backend="gloo", scaling="weak",
          bucket_cap_mb=25.0), "788352347eed"),  # ddp-fashion_mnist-b64
]


@pytest.mark.parametrize("fields, case_id", RECORDED_CASE_IDS, ids=[i for _, i in RECORDED_CASE_IDS])
def test_recorded_case_ids_are_pinned(fields, case_id):
    assert Case(**fields).case_id == case_id


# --------------------------------------------------------------------------- the torch-free choices


def test_the_torch_free_choices_mirror_mlps_enums_and_registry():
    """case_fields mirrors mlp's closed choices so that --help and sweep files need no torch: they must agree."""
    import mlp
    from bench.model import case_fields

    assert case_fields.ACTIVATION_NAMES == tuple(mlp.ACTIVATIONS)
    assert case_fields.PRECISION_NAMES == tuple(m.value for m in mlp.Precision)
    assert case_fields.OPTIMIZER_NAMES == tuple(m.value for m in mlp.Optimizer)
    assert case_fields.LOSS_NAMES == tuple(m.value for m in mlp.Loss)
    assert case_fields.PARAM_DTYPE_NAMES == tuple(m.value for m in mlp.ParamDtype)
    assert case_fields.EPILOGUE_NAMES == tuple(m.value for m in mlp.Epilogue)


def test_every_choice_is_one_a_case_takes_and_every_string_flag_lists_its_choices():
    from bench.model.case_fields import FIELD_CHOICES, FIELD_TYPES, FLAG_FIELDS

    cuda_only = {("dtype", "fp16")}  # the one value that needs another field (device cuda)
    needs = {"norm": {"network": "residual"},  # a field of one built-in net only
             "cuda_graph": {"device": "cuda"}, "compile_scope": {"compile": "default"},  # knobs that need another
             "param_dtype": {"dtype": "bf16"}}
    for field, values in FIELD_CHOICES.items():
        for value in values:
            extra = {"device": "cuda"} if (field, value) in cuda_only else {}
            extra |= needs.get(field, {})
            assert getattr(Case(**{field: value, **extra}), field) == value
    # a new string case field lists its valid values in FIELD_CHOICES, so that its flag's --help shows them;
    # a field without a closed set (a model's import path, say) is named here instead, and its help says "text"
    # a factory path, key=value options, a shape, an inputs function and an output's index or key
    free_text = {"model", "model_args", "optimizer_args", "sample_shape", "inputs", "output"}
    missing = {f for f in FLAG_FIELDS if FIELD_TYPES[f] is str} - set(FIELD_CHOICES) - free_text
    assert not missing, f"add the valid values of {sorted(missing)} to bench.model.case_fields.FIELD_CHOICES"


def test_case_precision_is_typed():
    """``Case.precision``: PyTorch's own autocast dtypes are the reference."""
    import torch

    import mlp

    assert Case(dtype="BF16").precision is mlp.Precision.BF16
    assert Case(dtype="bf16").precision.autocast_dtype is torch.bfloat16
    assert Case().precision is mlp.Precision.FP32 and Case().precision.autocast_dtype is None
