"""Case fields onto a user factory's arguments (bench.case.plugin.factory_call), against real torch and timm signatures.

The reference is the factory itself: ``inspect.signature(...).bind`` must accept the call, and the module it builds
must have the shapes, device and parameter dtype the case asks for (nn.Linear's weight is out x in; timm's Mlp
maps in -> hidden -> out). Every value below is written by hand from the case, not read back from the code.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from bench.case.cases import Case
from bench.errors import ModelError
from bench.case.plugin import Factory, case_values, factory_call

FIELDS = case_values(Case(width=64, depth=3, in_features=12, out_features=7, batch=8, dtype="bf16"))


def _call(target, model_args=None, fields=FIELDS, given=None):
    return factory_call(Factory("test:factory", target, ""), fields, model_args or {}, given)


def test_nn_linear_gets_its_features_and_torch_device_and_dtype():
    call = _call(nn.Linear)
    assert call.kwargs == {"in_features": 12, "out_features": 7, "device": torch.device("cpu"),
                           "dtype": torch.float32}  # parameters stay fp32 under a bf16 case (autocast)
    inspect.signature(nn.Linear).bind(**call.kwargs)
    layer = nn.Linear(**call.kwargs)
    assert layer.weight.shape == (7, 12) and layer.weight.dtype == torch.float32
    assert set(call.taken) == {"in_features", "out_features", "device", "dtype"}


def test_a_model_arg_overrides_the_case_field_and_dtype_text_becomes_torchs():
    call = _call(nn.Linear, {"out_features": 3, "dtype": "bfloat16", "bias": False})
    assert call.kwargs == {"in_features": 12, "out_features": 3, "device": torch.device("cpu"),
                           "dtype": torch.bfloat16, "bias": False}
    assert "out_features" not in call.taken and "dtype" not in call.taken
    layer = nn.Linear(**call.kwargs)
    assert layer.weight.shape == (3, 12) and layer.bias is None and layer.weight.dtype == torch.bfloat16


def test_the_case_device_reaches_a_torch_device_keyword():
    fields = {**FIELDS, "device": "cuda"}
    assert _call(nn.Linear, fields=fields).kwargs["device"] == torch.device("cuda")


def test_timm_mlp_takes_in_and_out_features_and_keeps_its_own_act_layer():
    """timm's Mlp(in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, ...): the case's
    'activation' is no parameter of it; its width is not hidden_features unless a model arg says so."""
    from timm.layers import Mlp

    call = _call(Mlp, {"hidden_features": 40})
    expected = {"in_features": 12, "out_features": 7, "hidden_features": 40}
    params = inspect.signature(Mlp).parameters  # timm 1.0.31 takes PyTorch's device= and dtype= too
    expected.update({k: v for k, v in (("device", torch.device("cpu")), ("dtype", torch.float32)) if k in params})
    assert call.kwargs == expected
    inspect.signature(Mlp).bind(**call.kwargs)
    mlp = Mlp(**call.kwargs)
    assert (mlp.fc1.in_features, mlp.fc1.out_features, mlp.fc2.out_features) == (12, 40, 7)
    assert mlp.fc1.weight.dtype == torch.float32


def test_fields_are_passed_under_their_own_names_and_a_foreign_meaning_keeps_its_default():
    def factory(width, depth: int = 1, batch=None, activation=nn.GELU, threads: float = 0.5):
        return nn.Linear(width, width)

    call = _call(factory)
    assert call.kwargs == {"width": 64, "depth": 3, "batch": 8, "threads": FIELDS["threads"]}
    assert call.kept == (("activation", nn.GELU),)
    with pytest.raises(ModelError, match="--model-args activation="):
        _call(factory, given={"activation": "tanh"})  # the user set --activation, which this factory cannot take


def test_a_model_arg_the_factory_does_not_take_and_a_missing_required_one_are_errors():
    with pytest.raises(ModelError, match="'hidden'"):
        _call(nn.Linear, {"hidden": 3})

    def factory(in_features, scale):
        return nn.Linear(in_features, in_features)

    with pytest.raises(ModelError, match="'scale'"):
        _call(factory)
    assert _call(factory, {"scale": 2.0}).kwargs == {"in_features": 12, "scale": 2.0}
