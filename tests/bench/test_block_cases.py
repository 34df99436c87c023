"""The block networks as cases: fields that apply only where they do, identities, building and accounting."""

from __future__ import annotations

import hashlib

import pytest
import torch

import mlp
from bench.model.case_fields import NORM_NAMES
from bench.case.cases import PRESETS, Case
from bench.cli import main as cli_main

OLD_FIELDS = ("network", "width", "depth", "in_features", "out_features", "batch", "activation", "device", "dtype",
              "compile", "optimizer", "loss", "threads")  # the case's fields before data parallelism and the blocks


def test_an_existing_case_keeps_its_identifier():
    case = Case(width=512, depth=4, batch=128, activation="gelu", dtype="bf16")
    text = "|".join(f"{name}={getattr(case, name)}" for name in OLD_FIELDS)
    assert case.case_id == hashlib.sha1(text.encode()).hexdigest()[:12]


def test_the_norm_enums_agree():
    assert NORM_NAMES == tuple(n.value for n in mlp.Norm)


@pytest.mark.parametrize("fields, message", [
    (dict(network="uniform", norm="layernorm"), "norm 'layernorm' does not apply to network 'uniform'"),
    (dict(network="ffn", norm="rmsnorm"), "norm 'rmsnorm' does not apply to network 'ffn' (only to residual)"),
    (dict(network="uniform", dropout=0.1), "dropout 0.1 does not apply to network 'uniform'"),
    (dict(network="swiglu", expansion=8), "expansion 8 does not apply to network 'swiglu'"),
    (dict(network="residual", hidden=64), "hidden 64 does not apply to network 'residual' (only to swiglu)"),
    (dict(network="teaching", bias="off"), "bias 'off' does not apply to network 'teaching'"),
    (dict(network="swiglu", activation="gelu"), "does not apply to network 'swiglu' (its gate is SiLU)"),
    (dict(network="ffn", dropout=1.0), "dropout must be in [0, 1)"),
    (dict(network="ffn", depth=0), "depth must be >= 1"),
    (dict(network="ffn", expansion=0), "expansion must be >= 1"),
    (dict(network="residual", norm="batchnorm"), "unknown norm 'batchnorm'"),
    (dict(network="ffn", bias="maybe"), "bias must be on or off"),
])
def test_a_field_that_does_not_apply_is_one_line(fields, message):
    with pytest.raises(ValueError) as error:
        Case(**fields)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_cli_refuses_it_with_exit_2_before_measuring(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["run", "--network", "uniform", "--norm", "rmsnorm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "norm 'rmsnorm' does not apply" in err and not out.exists()


def test_a_block_case_round_trips_and_builds_its_net():
    case = Case(network="residual", width=16, depth=3, in_features=5, out_features=2, norm="rmsnorm", dropout=0.25,
                bias="false", expansion=2, activation="gelu")
    assert case.bias == "off" and Case.from_row(case.to_row()) == case
    assert case.case_id != case.with_(norm="layernorm").case_id
    model = case.build_model()
    assert isinstance(model, mlp.BlockNet) and len(model.blocks) == 3 and isinstance(model.final_norm, torch.nn.RMSNorm)
    assert model.in_proj.in_features == 5 and model.out_proj.out_features == 2 and model.in_proj.bias is None
    assert model.blocks[0].ffn.fc_in.out_features == 32 and model.blocks[0].ffn.dropout.p == 0.25
    assert model(case.make_batch()[0]).shape == (case.batch, 2)
    assert "--norm rmsnorm" in case.cli_flags() and "--bias off" in case.cli_flags()


def test_swiglu_takes_llamas_hidden_size_and_its_own_gate():
    case = Case(network="swiglu", width=256)
    assert case.activation == "silu" and case.build_model().blocks[0].w1.out_features == mlp.llama_hidden(256) == 768
    assert case == Case(network="swiglu", width=256, activation="silu") and "h768" in case.label


def test_bias_off_reaches_the_uniform_net():
    model = Case(width=8, depth=2, bias="off").build_model()
    assert all(layer.bias is None for layer in model.linears)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_case_of_the_blocks_preset_is_accounted(device):
    for case in PRESETS["blocks"].cases({"device": (device,)}):
        with torch.device("meta"):
            model = case.build_model()
        flops = mlp.flops(model, case.batch, case.loss, case.optimizer)
        memory = mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.dtype, device)
        traffic = mlp.traffic(model, case.batch, case.input_shape, case.loss, case.optimizer, case.dtype, device)
        assert flops.step_matmul > 0 and memory.phase_peak_bytes()["step"] > 0 and traffic.step.total_bytes > 0


def test_the_fastest_step_knobs_that_the_blocks_accounting_lacks_are_refused_in_one_line():
    import pytest as _pytest

    from bench.case.cases import Case as _Case

    for knob in ({"param_dtype": "compute", "dtype": "bf16"}, {"epilogue": "fused"}):
        with _pytest.raises(ValueError, match="apply to the uniform, teaching and FashionMNIST nets"):
            _Case(network="ffn", width=16, depth=1, **knob)
    assert _Case(width=16, depth=1, dtype="bf16", param_dtype="compute").param_dtype == "compute"
