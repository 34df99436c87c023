"""bench.case.plugin's small parts against hand-written answers and the standard library: the spelling of --model,
registration names, resolving a factory, what another process needs to rebuild it (``recipe``), what a declared
parameter means, inputs and outputs of a user's model, the shapes an input is described by, source hashes
(hashlib on the file's bytes), and the label's arguments. Each expected value is written out here, not read back."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.case import plugin
from bench.case.cases import Case
from bench.errors import ModelError

FILE = '''\
from torch import nn


def make(width, depth=1):
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


NOT_CALLABLE = 3


class Box:
    class Inner:
        pass
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    for name in [name for name in sys.modules if name.split(".")[0] == "userpkg"]:  # imported once per process
        monkeypatch.delitem(sys.modules, name)
    (tmp_path / "userblocks.py").write_text(FILE)
    package = tmp_path / "userpkg" / "sub"
    package.mkdir(parents=True)
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "mods.py").write_text(FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- the name of a model


@pytest.mark.parametrize("text, expected", [
    ("", ""), ("   ", ""), (None, ""),
    (" my_pkg.blocks:make_ffn ", "my_pkg.blocks:make_ffn"),
    ("./blocks.py:make_ffn", "blocks.py:make_ffn"),  # a path is normalised, a module is not
    ("a/../b/blocks.py:Cls.make", "b/blocks.py:Cls.make"),
    ("torch.nn:Linear#0123456789ab", "torch.nn:Linear#0123456789ab"),  # a registered module object's name
    ("c:/x.py:f", "c:/x.py:f"),  # the last colon splits
])
def test_a_model_name_is_spelled_one_way(text, expected):
    assert plugin.normalise_name(text) == expected


@pytest.mark.parametrize("text", ["blocks", ":make", "blocks:", "blocks:1make", "blocks:make-ffn", "blocks:#abc"])
def test_a_malformed_model_name_is_one_line_with_an_example(text):
    with pytest.raises(ValueError, match="^" + re.escape(f"--model {text!r}: expected MODULE:FACTORY or "
                                                         "PATH.py:FACTORY (e.g. my_pkg.blocks:make_ffn or "
                                                         "./blocks.py:...)") + "$"):
        plugin.normalise_name(text)
    with pytest.raises(ValueError, match="^" + re.escape(f"--inputs {text!r}: expected MODULE:FUNCTION or "
                                                         "PATH.py:FUNCTION (e.g. my_pkg.blocks:fn or "
                                                         "./blocks.py:...)") + "$"):
        plugin.normalise_name(text, "--inputs")


@pytest.mark.parametrize("where, expected", [
    ("blocks.py", True), ("dir/blocks", True), ("my_pkg.blocks", False), ("blocks", False), (f"a{os.sep}b", True),
])
def test_a_path_is_a_py_file_or_has_a_slash(where, expected):
    assert plugin.is_path(where) is expected


def _local_factory(width):
    return nn.Linear(width, width)


def test_registration_names_a_factory_by_module_and_qualname_and_a_module_object_by_its_hash():
    assert plugin.register(_local_factory) == f"{__name__}:_local_factory"
    assert plugin.resolve(f"{__name__}:_local_factory").target is _local_factory

    def inner(width):
        return nn.Linear(width, width)

    name = plugin.register(inner)
    assert name == f"{__name__}:test_registration_names_a_factory_by_module_and_qualname_and_a_module_object_by_its_" \
                   "hash.inner"  # '<locals>.' dropped
    assert plugin.register(lambda width: nn.Linear(width, width)).endswith(".lambda")
    module = nn.Linear(3, 4)
    name = plugin.register(module)
    cls_sha = _sha(Path(inspect.getsourcefile(nn.Linear)))
    module_sha = hashlib.sha256((cls_sha + repr(module)).encode()).hexdigest()[:16]
    assert name == f"torch.nn.modules.linear:Linear#{module_sha[:12]}"
    factory = plugin.resolve(name)
    assert factory.target is module and factory.is_module and factory.source_sha == module_sha
    assert plugin.register(nn.Linear(4, 3)) != name  # another shape, another name
    with pytest.raises(ModelError, match="^measure\\(\\) takes an nn.Module or a callable that returns one, got int$"):
        plugin.register(3)


def test_a_module_object_of_another_process_is_one_line():
    with pytest.raises(ModelError, match="^" + re.escape("--model torch.nn:Linear#000000000000: a module object given "
                                                         "to measure() in another process; give a factory "
                                                         "(MODULE:FACTORY) to measure it again") + "$"):
        plugin.resolve("torch.nn:Linear#000000000000")


def test_resolve_finds_a_file_a_module_and_a_nested_attribute_and_hashes_the_file(user_dir):
    by_file = plugin.resolve("userblocks.py:make")
    assert by_file.name == "userblocks.py:make" and by_file.source_sha == _sha(user_dir / "userblocks.py")
    assert isinstance(by_file.target(width=3), nn.Sequential) and not by_file.is_module
    by_module = plugin.resolve("userpkg.sub.mods:Box.Inner")
    assert by_module.target.__qualname__ == "Box.Inner"
    assert by_module.source_sha == _sha(user_dir / "userpkg" / "sub" / "mods.py")


@pytest.mark.parametrize("name, message", [
    ("userblocks.py:missing", "--model userblocks.py:missing: userblocks.py has no 'missing'"),
    ("userblocks.py:Box.missing", "--model userblocks.py:Box.missing: userblocks.py has no 'Box.missing'"),
    ("userblocks.py:NOT_CALLABLE", "--model userblocks.py:NOT_CALLABLE: NOT_CALLABLE is a int, not a callable"),
    ("nofile.py:make", "--model nofile.py:make: no such file nofile.py"),
    ("no_such_module_xyz:make", "--model no_such_module_xyz:make: cannot import no_such_module_xyz "
                                "(ModuleNotFoundError: No module named 'no_such_module_xyz')"),
])
def test_what_cannot_be_resolved_is_one_line(user_dir, name, message):
    with pytest.raises(ModelError, match="^" + re.escape(message) + "$"):
        plugin.resolve(name)
    with pytest.raises(ModelError, match="^" + re.escape(message.replace("--model", "--loss", 1)) + "$"):
        plugin.resolve(name, "--loss")


def test_a_file_that_fails_at_import_is_one_line_and_leaves_no_module_behind(user_dir):
    (user_dir / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(ModelError, match="^" + re.escape("--model broken.py:f: cannot import broken.py "
                                                         "(RuntimeError: no GPU here)") + "$"):
        plugin.resolve("broken.py:f")
    assert not any(name.startswith("mlpbench_user_broken_") for name in sys.modules)


# --------------------------------------------------------------------------- what another process needs


def test_a_recipe_names_the_files_and_the_import_root(user_dir):
    """A file: its folder is the import root, the file alone. A dotted module two packages deep: the root is the
    folder above the top package, the files are the module and each package's __init__.py."""
    by_file = plugin.recipe("userblocks.py:make")
    assert by_file["kind"] == "file" and by_file["files"] == ["userblocks.py"]
    assert by_file["import_root"] == by_file["source_dir"] == str(user_dir.resolve())
    assert by_file["cwd"] == os.getcwd() and by_file["source_sha"] == _sha(user_dir / "userblocks.py")
    assert by_file["model"] == "userblocks.py:make"
    by_module = plugin.recipe("userpkg.sub.mods:make")
    assert by_module["kind"] == "module" and by_module["import_root"] == str(user_dir.resolve())
    assert by_module["source_dir"] == str((user_dir / "userpkg" / "sub").resolve())
    assert by_module["files"] == ["userpkg/sub/mods.py", "userpkg/sub/__init__.py", "userpkg/__init__.py"]
    module_object = plugin.register(nn.Linear(2, 2))
    none = plugin.recipe(module_object)
    assert none["kind"] == "none" and "no file another process can import" in none["why"]


def test_recipes_group_each_models_args_and_a_model_that_cannot_resolve_is_kind_none(user_dir):
    cases = [Case(model="userblocks.py:make", model_args="depth=2"), Case(model="userblocks.py:make", model_args=""),
             Case(model="userblocks.py:make", model_args="depth=2"), Case(width=8),
             Case(model="userblocks.py:missing")]
    found = plugin.recipes(cases)
    assert [r["model"] for r in found] == ["userblocks.py:make", "userblocks.py:missing"]
    assert found[0]["model_args"] == ["", "depth=2"] and found[0]["kind"] == "file"
    assert found[1]["kind"] == "none" and found[1]["why"] == "--model userblocks.py:missing: userblocks.py has no " \
                                                             "'missing'"
    assert found[1]["model_args"] == [""] and found[1]["cwd"] == os.getcwd()


# --------------------------------------------------------------------------- what a parameter means


def _param(name, default=inspect.Parameter.empty, annotation=inspect.Parameter.empty):
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


@pytest.mark.parametrize("param, value, meaning", [
    (_param("device", None), "cpu", "torch"),
    (_param("device", torch.device("cpu")), "cpu", "torch"),
    (_param("dtype", torch.float32), "bf16", "torch"),
    (_param("device", annotation=torch.device), "cpu", "torch"),
    (_param("dtype", annotation="torch.dtype | None"), "bf16", "torch"),
    (_param("device", "cpu"), "cpu", "case"),  # a plain string default: the case's text
    (_param("width"), 64, "case"),
    (_param("width", annotation=int), 64, "case"),
    (_param("width", annotation=str), 64, "other"),
    (_param("width", annotation="int"), 64, "case"),  # a string annotation is not checked
    (_param("width", None), 64, "case"),
    (_param("width", 32), 64, "case"),
    (_param("width", 32.0), 64, "case"),  # an int fits a float default
    (_param("width", "32"), 64, "other"),
    (_param("depth", True), 3, "other"),  # an int is no bool
    (_param("depth", 3), True, "case"),  # a bool is an int
    (_param("activation", nn.GELU), "relu", "other"),
    (_param("threads", 1), 0.5, "other"),  # a float does not fit an int default
])
def test_what_a_declared_case_field_means(param, value, meaning):
    assert plugin._meaning(param, value) == meaning


def test_a_torch_keyword_given_as_text_becomes_torchs_object():
    dtype, device = _param("dtype", None), _param("device", None)
    assert plugin._torch_value(dtype, "bfloat16") is torch.bfloat16
    assert plugin._torch_value(device, "meta") == torch.device("meta")
    assert plugin._torch_value(None, "bfloat16") == "bfloat16"  # not a declared parameter: as given
    assert plugin._torch_value(dtype, 3) == 3  # not text: as given
    assert plugin._torch_value(_param("dtype", "fp32"), "bfloat16") == "bfloat16"  # dtype= of another meaning
    for text in ("float", "nn", "cuda", "nonesuch"):  # torch.float is a dtype; torch.nn is not, nor an unknown name
        if text == "float":
            assert plugin._torch_value(dtype, text) is torch.float32
            continue
        with pytest.raises(ModelError, match="^" + re.escape(f"--model-args dtype={text}: not a torch dtype (e.g. "
                                                             "float32, bfloat16)") + "$"):
            plugin._torch_value(dtype, text)


def test_a_module_object_takes_no_model_args_and_an_unsigned_callable_gets_them_as_given():
    module = plugin.Factory("m:M#0", nn.Linear(2, 2), "")
    assert plugin.factory_call(module, {"width": 3}, {}) == plugin.Call({})
    with pytest.raises(ModelError, match="^" + re.escape("--model m:M#0: a module object takes no --model-args") + "$"):
        plugin.factory_call(module, {}, {"bias": False})
    call = plugin.factory_call(plugin.Factory("b:f", NoSignature(), ""), {"width": 3}, {"k": 1})
    assert call == plugin.Call({"k": 1})  # no signature to read: the model args alone, no case field


class NoSignature:
    __signature__ = "not a signature"  # inspect.signature raises TypeError on it

    def __call__(self, **kwargs):
        return nn.Linear(2, 2)


def test_a_required_positional_only_parameter_and_a_missing_one_are_one_line():
    def positional(width, /):
        return nn.Linear(width, width)

    with pytest.raises(ModelError, match="positional-only parameter 'width'; the factory is called with keyword "
                                         "arguments$"):
        plugin.factory_call(plugin.Factory("p:f", positional, ""), {"width": 3}, {})

    def needs(width, hidden):
        return nn.Linear(width, hidden)

    with pytest.raises(ModelError, match="^" + re.escape("--model p:g(width, hidden): needs 'hidden', which is neither "
                                                         "a case field (network, width, depth, in_features, "
                                                         "out_features, batch, ...) nor in --model-args") + "$"):
        plugin.factory_call(plugin.Factory("p:g", needs, ""), {"width": 3}, {})

    def takes_kwargs(width, **options):
        return nn.Linear(width, width)

    call = plugin.factory_call(plugin.Factory("p:h", takes_kwargs, ""), {"width": 3, "depth": 2}, {"extra": 1})
    assert call.kwargs == {"width": 3, "extra": 1} and call.taken == ("width",)


# --------------------------------------------------------------------------- inputs and outputs


class Echo(nn.Module):
    def forward(self, *args, **kwargs):
        return args, kwargs


def test_a_tensor_a_tuple_a_list_and_a_dict_input_are_called_as_such():
    t = torch.ones(2)
    assert plugin.call_model(Echo(), t) == ((t,), {})
    assert plugin.call_model(Echo(), (t, 3)) == ((t, 3), {})
    assert plugin.call_model(Echo(), [t, 3]) == ((t, 3), {})
    assert plugin.call_model(Echo(), {"x": t}) == ((), {"x": t})


def test_the_output_is_picked_by_index_key_or_attribute():
    out = (10, 20, 30)
    assert plugin.select_output(out, "") is out
    assert plugin.select_output(out, "0") == 10 and plugin.select_output(out, "2") == 30
    assert plugin.select_output(out, "-1") == 30
    assert plugin.select_output({"logits": 1, "0": 2}, "logits") == 1
    assert plugin.select_output({"logits": 1, "0": 2}, "0") == 2  # a dict's key "0", not its first item
    assert plugin.select_output(type("Out", (), {"logits": 5})(), "logits") == 5
    wrapped = plugin.ModelCall(Echo(), "1")
    assert wrapped((torch.ones(1),)) == {}  # Echo's (args, kwargs): output "1" is the kwargs


@pytest.mark.parametrize("x, batch, text", [
    (torch.zeros(2, 1, 28, 28), True, "(2, 1, 28, 28)"),
    (torch.zeros(2, 1, 28, 28), False, "1x28x28"),
    (torch.zeros(2), False, "1"),  # one number an example
    ({"x": torch.zeros(2, 16), "mask": torch.zeros(2, 16)}, True, "(x (2, 16), mask (2, 16))"),
    ({"x": torch.zeros(2, 16), "mask": torch.zeros(2, 16)}, False, "x=16;mask=16"),
    ((torch.zeros(2, 3), torch.zeros(2, 4, 5)), True, "((2, 3), (2, 4, 5))"),
    ((torch.zeros(2, 3), torch.zeros(2, 4, 5)), False, "3;4x5"),
    ("text", False, "str"),
])
def test_an_input_is_described_by_its_shapes(x, batch, text):
    assert plugin.describe_input(x, batch=batch) == text


def test_linear_layers_counts_every_nn_linear_at_any_depth():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 3), nn.Bilinear(3, 3, 3)),
                          nn.MultiheadAttention(4, 1))  # attention's out_proj is an nn.Linear (a subclass)
    assert plugin.linear_layers(model) == 3


# --------------------------------------------------------------------------- hashes and labels


def test_a_file_hash_is_sha256_of_its_bytes_and_an_unreadable_file_hashes_to_nothing(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"def f():\n    return 1\n")
    assert plugin.file_sha(str(path)) == hashlib.sha256(b"def f():\n    return 1\n").hexdigest()[:16]
    assert plugin.file_sha(str(tmp_path / "missing.py")) == "" and plugin.file_sha(None) == ""
    assert plugin.file_sha(str(tmp_path)) == ""  # a folder cannot be read as bytes


def test_a_callable_without_a_file_is_hashed_by_its_source_or_bytecode():
    assert plugin._callable_sha(_local_factory) == _sha(Path(__file__))
    namespace = {}
    exec(compile("def g(x):\n    return x\n", "<cell>", "exec"), namespace)  # a notebook cell: no file, no source
    code = namespace["g"].__code__.co_code
    assert plugin._callable_sha(namespace["g"]) == hashlib.sha256(code).hexdigest()[:16]
    assert plugin._callable_sha(len) == hashlib.sha256(repr(len).encode()).hexdigest()[:16]


def test_the_label_shows_the_fields_a_case_sets_and_its_model_args():
    case = Case(model="torch.nn:Linear", in_features=64, out_features=32, model_args="bias=false")
    assert plugin.call_args(case) == "bias=false,in_features=64,out_features=32"
    assert plugin.call_args(Case(model="m.py:f", width=128, depth=3)) == "depth=3,width=128"
    assert plugin.call_args(Case(model="m.py:f")) == ""


def test_the_fields_a_factory_takes(user_dir):
    assert plugin.taken_fields(Case(model="userblocks.py:make", width=16)) == ("width", "depth")
    assert plugin.taken_fields(Case(model="userblocks.py:missing")) == ()
    assert plugin.taken_fields(Case(model=plugin.register(nn.Linear(2, 2)))) == ()


def test_a_note_is_printed_once_per_model_and_text(capsys, monkeypatch):
    monkeypatch.setattr(plugin, "_NOTED", set())  # the process's notes so far: none
    plugin._note_once("reference:model", "first")
    plugin._note_once("reference:model", "first")
    plugin._note_once("reference:model", "second")
    assert capsys.readouterr().err == "mlpbench: note: first\nmlpbench: note: second\n"


def test_build_makes_the_model_on_the_device_asked_for(user_dir):
    case = Case(model="userblocks.py:make", width=16, depth=2)
    on_meta = plugin.build(case, "meta")
    assert [p.device.type for p in on_meta.parameters()] == ["meta"] * 4
    here = plugin.build(case)
    assert isinstance(here, nn.Sequential) and [tuple(p.shape) for p in here.parameters()] == [(16, 16), (16,)] * 2
    module = nn.Linear(3, 3)
    copy = plugin.build(Case(model=plugin.register(module), in_features=3, out_features=3), "meta")
    assert copy is not module and copy.weight.device.type == "meta" and module.weight.device.type == "cpu"
    wrapped = plugin.build(Case(model="userblocks.py:make", width=16, output="0"))
    assert isinstance(wrapped, plugin.ModelCall) and wrapped.output == "0"


def test_check_all_checks_each_distinct_small_case_once(monkeypatch, user_dir):
    checked = []
    monkeypatch.setattr(plugin, "check", checked.append)
    cases = [Case(model="userblocks.py:make", width=16, batch=b, dtype=d) for b in (8, 64) for d in ("fp32", "bf16")]
    plugin.check_all([*cases, Case(width=8), Case(model="userblocks.py:make", width=32)])
    assert [(c.width, c.batch, c.dtype, c.device) for c in checked] == [(16, 2, "fp32", "cpu"), (32, 2, "fp32", "cpu")]


def test_make_inputs_calls_fn_with_batch_device_and_fp32_and_refuses_what_is_no_tensor(user_dir):
    (user_dir / "ins.py").write_text(textwrap.dedent('''
        import torch

        def good(batch, device, dtype):
            return {"x": torch.zeros(batch, 3, device=device, dtype=dtype)}

        def bad(batch, device, dtype):
            return [torch.zeros(batch), 3]

        def empty(batch, device, dtype):
            return ()

        def fails(batch, device, dtype):
            raise KeyError("x")
    '''))
    x = plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins.py:good", batch=5), "cpu")
    assert x["x"].shape == (5, 3) and x["x"].dtype == torch.float32
    for name, word in (("bad", "list"), ("empty", "tuple")):
        with pytest.raises(ModelError, match="^" + re.escape(f"--inputs ins.py:{name}: returned {word}; return a "
                                                             "tensor, a tuple or a dict of tensors") + "$"):
            plugin.make_inputs(Case(model="userblocks.py:make", inputs=f"ins.py:{name}"), "cpu")
    with pytest.raises(ModelError, match="^" + re.escape("--inputs ins.py:fails: raised KeyError: 'x' (it is called as "
                                                         "fn(batch, device, dtype))") + "$"):
        plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins.py:fails"), "cpu")


# --------------------------------------------------------------------------- the check before measuring

CHECKED = '''
import torch
from torch import nn


class Outputs(nn.Module):
    """in 4 -> out 3; ``kind`` picks what forward returns."""

    def __init__(self, kind="tensor"):
        super().__init__()
        self.fc, self.kind = nn.Linear(4, 3), kind

    def forward(self, x):
        y = self.fc(x)
        return {"tensor": y, "dict": {"logits": y, "aux": 1}, "tuple": (y, y.sum()), "list": [y], "number": 3.0,
                "wrong": y[:, :2], "raise": None, "empty": {}}[self.kind] if self.kind != "raise" else 1 / 0


def make(kind="tensor"):
    return Outputs(kind)


def by_device(width):
    """Records the device each build runs under (the ambient torch.device)."""
    BUILT.append(torch.empty(0).device.type)
    return nn.Linear(width, width)


BUILT = []


def vector_loss(output, target):
    return (output - target) ** 2


def failing_loss(output, target):
    raise ValueError("no")


def detached_loss(output, target):
    return ((output - target) ** 2).mean().detach()
'''


@pytest.fixture
def checked(tmp_path, monkeypatch):
    (tmp_path / "checked.py").write_text(CHECKED)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(**fields):
    kw = {"model": "checked.py:make", "in_features": 4, "out_features": 3, **fields}
    plugin.check(Case(**kw))


@pytest.mark.parametrize("fields, message", [
    (dict(model_args="kind=dict"), "--model checked.py:make: forward returned a dict with keys logits, aux; choose "
                                   "what the loss takes with --output KEY (output='logits' in Python)"),
    (dict(model_args="kind=empty"), "--model checked.py:make: forward returned a dict with keys ; choose what the "
                                    "loss takes with --output KEY (output='logits' in Python)"),
    (dict(model_args="kind=tuple"), "--model checked.py:make: forward returned a tuple of 2; choose what the loss "
                                    "takes with --output 0 (an index; output='0' in Python)"),
    (dict(model_args="kind=list"), "--model checked.py:make: forward returned a list of 1; choose what the loss "
                                   "takes with --output 0 (an index; output='0' in Python)"),
    (dict(model_args="kind=number"), "--model checked.py:make: forward returned a float, not a tensor (a tuple or "
                                     "dict output: choose with --output)"),
    (dict(model_args="kind=dict", output="nope"), "--output nope: the output has keys logits, aux; give one of those"),
    (dict(model_args="kind=tuple", output="2"), "--output 2: the output has 2 items (0-1); give one of those"),
    (dict(model_args="kind=number", output="0"), "--output 0: the output has float; give one of those"),
    (dict(model_args="kind=dict", output="aux"), "--output aux: picks a int, not a tensor; pick a tensor"),
    (dict(model_args="kind=wrong"), "--model checked.py:make: output shape (2, 2) does not fit the mse loss, which "
                                    "needs (batch, out_features) = (2, 3) for an input of (2, 4); set --out-features "
                                    "2 (or --in-features / --input-shape), or change the model"),
    (dict(model_args="kind=raise"), "--model checked.py:make: forward raised ZeroDivisionError: division by zero (on "
                                    "an input of (2, 4): set --input-shape (e.g. 1,28,28 for images) or "
                                    "--in-features, or in Python inputs=fn(batch, device, dtype) for a tuple or dict "
                                    "input)"),
    (dict(loss="checked.py:vector_loss"), "--loss checked.py:vector_loss: returned (2, 3), not a scalar tensor; "
                                          "reduce it (e.g. .mean())"),
    (dict(loss="checked.py:failing_loss"), "--model checked.py:make: the checked.py:failing_loss loss raised "
                                           "ValueError: no (output (2, 3), target (2, 3))"),
    (dict(loss="checked.py:detached_loss"), "--model checked.py:make: loss and backward raised RuntimeError: element "
                                            "0 of tensors does not require grad and does not have a grad_fn"),
    (dict(depth=3), "--depth 3: checked.py:make takes no 'depth', so it would change nothing; leave --depth out (the "
                    "factory's own options go in --model-args)"),
    (dict(activation="tanh"), "--activation tanh: checked.py:make takes no 'activation', so it would change nothing; "
                              "leave --activation out (the factory's own options go in --model-args)"),
    (dict(width=64), "--width 64: checked.py:make takes no 'width', so it would change nothing; leave --width out "
                     "(the factory's own options go in --model-args)"),
])
def test_each_fault_of_the_check_is_its_own_line(checked, fields, message):
    with pytest.raises(ModelError, match="^" + re.escape(message) + "$"):
        _check(**fields)


def test_a_good_model_passes_the_check_and_an_output_choice_picks_its_part(checked):
    _check()
    _check(model_args="kind=dict", output="logits")
    _check(model_args="kind=tuple", output="0")
    _check(model_args="kind=list", output="-1")
    _check(model="checked.py:by_device", in_features=0, out_features=0, width=8)  # the width sizes in and out


def test_a_width_with_nothing_to_size_is_refused_only_where_in_and_out_are_both_set(checked):
    """--width is the in/out features where those are 0 (the default), so a factory that takes no width may still be
    given one; only with both --in-features and --out-features set is it a field the model ignores."""
    with pytest.raises(ModelError, match="takes no 'width'"):
        _check(width=64)
    _check(in_features=4, out_features=0, width=3)  # width sizes the output: 3


def test_a_model_over_the_check_limit_is_checked_on_the_meta_device(checked, monkeypatch):
    """By default a small model is built twice: on meta (to size it) and on the CPU for the real forward. Over
    CHECK_MAX_BYTES (here 100 bytes; a Linear(8, 8) has 288), the forward runs on the meta device alone."""
    import importlib

    module = importlib.import_module(plugin.resolve("checked.py:by_device").target.__module__)
    case = Case(model="checked.py:by_device", in_features=0, out_features=0, width=8)
    module.BUILT.clear()
    plugin.check(case)
    assert module.BUILT == ["meta", "cpu"]
    module.BUILT.clear()
    monkeypatch.setattr(plugin, "CHECK_MAX_BYTES", 100)
    plugin.check(case)
    assert module.BUILT == ["meta"]


def test_inputs_are_moved_to_the_check_device_whatever_their_container():
    t = torch.zeros(2)
    moved = plugin._to({"a": t, "b": (t, [t]), "c": 3}, "meta")
    assert moved["a"].device.type == "meta" and moved["c"] == 3
    assert isinstance(moved["b"], tuple) and isinstance(moved["b"][1], list)
    assert moved["b"][0].device.type == moved["b"][1][0].device.type == "meta"


# --------------------------------------------------------------------------- the factory's call, its notes and build


def _meanings(width, activation=nn.GELU, dropout: float = 0.5):
    return nn.Linear(width, width)


def test_a_field_of_another_meaning_that_the_user_set_names_the_model_arg_that_sets_it():
    factory = plugin.Factory("m.py:make", _meanings, "")
    fields = {"width": 8, "activation": "relu", "dropout": 0.0}
    call = plugin.factory_call(factory, fields, {}, {"activation": "relu"})  # relu is the field's default: not set
    assert call.kept == (("activation", nn.GELU),) and call.taken == ("width", "dropout")
    with pytest.raises(ModelError, match="^" + re.escape("--activation tanh: m.py:make declares 'activation' with "
                                                         "another meaning (default GELU); set it with --model-args "
                                                         "activation=... and leave --activation out") + "$"):
        plugin.factory_call(factory, fields, {}, {"activation": "tanh"})
    signature = inspect.signature(_meanings)  # the label shows the signature as the standard library writes it
    with pytest.raises(ModelError, match="^" + re.escape(f"--model m.py:make{signature}: takes no argument 'hidden' "
                                                         "(from --model-args)") + "$"):
        plugin.factory_call(factory, fields, {"hidden": 3})
    assert plugin.factory_call(factory, fields, {"activation": "x"}).kwargs == {"width": 8, "activation": "x",
                                                                               "dropout": 0.0}


def test_a_kept_default_is_noted_once_per_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plugin, "_NOTED", set())  # the process's notes so far: none
    (tmp_path / "noted_once.py").write_text("from torch import nn\n\n\ndef make(width, activation=nn.GELU, "
                                            "rate=0.5):\n    return nn.Linear(width, width)\n")
    monkeypatch.chdir(tmp_path)
    case = Case(model="noted_once.py:make", width=8)
    assert plugin.case_call(case).kwargs == {"width": 8}
    plugin.case_call(case)
    assert capsys.readouterr().err == ("mlpbench: note: noted_once.py:make declares 'activation' with another meaning "
                                       "than the case field (default GELU): it keeps its default; --model-args "
                                       "activation=... sets it\n")


DEVICES = '''
import torch
from torch import nn

SEEN = []


def make(width, device=None, dtype=None):
    SEEN.append((device, dtype))
    return nn.Linear(width, width, device=device, dtype=dtype)


def fails(width):
    raise ValueError("bad width")


def number(width):
    return 3
'''


def test_build_passes_the_build_device_to_torchs_keyword_unless_a_model_arg_sets_it(tmp_path, monkeypatch):
    (tmp_path / "devices.py").write_text(DEVICES)
    monkeypatch.chdir(tmp_path)
    seen = plugin.resolve("devices.py:make").target.__globals__["SEEN"]
    plugin.build(Case(model="devices.py:make", width=4), "meta")
    plugin.build(Case(model="devices.py:make", width=4))
    with torch.device("meta"):
        plugin.build(Case(model="devices.py:make", width=4))
    plugin.build(Case(model="devices.py:make", width=4, model_args="device=cpu"), "meta")
    assert seen == [(torch.device("meta"), torch.float32), (torch.device("cpu"), torch.float32),
                    (torch.device("meta"), torch.float32), (torch.device("cpu"), torch.float32)]
    with pytest.raises(ModelError, match="^" + re.escape("--model devices.py:fails: the factory raised ValueError: "
                                                         "bad width") + "$"):
        plugin.build(Case(model="devices.py:fails", width=4))
    with pytest.raises(ModelError, match="^" + re.escape("--model devices.py:number: the factory returned a int, not "
                                                         "a torch.nn.Module") + "$"):
        plugin.build(Case(model="devices.py:number", width=4))


def test_a_file_is_loaded_again_when_its_content_changes_and_once_while_it_does_not(tmp_path, monkeypatch):
    path = tmp_path / "edited.py"
    path.write_text("def make(width):\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    first, again = plugin.resolve("edited.py:make"), plugin.resolve("edited.py:make")
    assert first.target is again.target and first.source_sha == _sha(path)
    path.write_text("def make(width):\n    return 2\n")
    edited = plugin.resolve("edited.py:make")
    assert edited.target is not first.target and edited.target(1) == 2 and edited.source_sha == _sha(path)


# --------------------------------------------------------------------------- survivors of the first mutmut run


def test_a_callable_object_without_a_module_or_qualname_is_registered_by_its_class_name():
    nameless = type("Maker", (), {"__call__": lambda self, width: nn.Linear(width, width), "__module__": None})()
    assert plugin.register(nameless) == "unknown:Maker"


def test_a_recipe_of_what_no_other_process_can_import_says_why(user_dir, monkeypatch):
    why = ("a module object or a function of a script or notebook: no file another process can import (give a "
           "factory as MODULE:FACTORY or PATH.py:FACTORY)")

    def script_factory(width):
        return nn.Linear(width, width)

    script_factory.__module__ = "__main__"  # a function of a script or notebook
    nameless = type("Maker", (), {"__call__": lambda self, width: nn.Linear(width, width), "__module__": None})()
    for name in (plugin.register(script_factory), plugin.register(len), plugin.register(nn.Linear(2, 2)),
                 plugin.register(nameless)):  # the last: no module at all (inspect.getmodule gives None)
        found = plugin.recipe(name)
        assert (found["kind"], found["why"], found["model"]) == ("none", why, name), name


def test_a_recipe_of_a_package_s_own_factory_and_of_a_namespace_package(user_dir):
    """A factory in userpkg/sub/__init__.py: the import root is two folders up, its files the two __init__.py. A
    namespace package (no __init__.py) adds no file that does not exist. A folder with a colon in its name is a path."""
    (user_dir / "userpkg" / "sub" / "__init__.py").write_text(FILE)
    package = plugin.recipe("userpkg.sub:make")
    assert package["import_root"] == str(user_dir.resolve())
    assert package["files"] == ["userpkg/sub/__init__.py", "userpkg/__init__.py"]
    (user_dir / "nspkg_ref").mkdir()
    (user_dir / "nspkg_ref" / "mods.py").write_text(FILE)
    assert plugin.recipe("nspkg_ref.mods:make")["files"] == ["nspkg_ref/mods.py"]
    (user_dir / "odd:dir").mkdir()
    (user_dir / "odd:dir" / "blocks.py").write_text(FILE)
    odd = plugin.recipe("odd:dir/blocks.py:make")
    assert odd["kind"] == "file" and odd["files"] == ["blocks.py"]


def test_the_model_call_passes_its_input_on(user_dir):
    t = torch.ones(1)
    out = plugin.ModelCall(Echo(), "0")((t,))
    assert out[0] is t
    assert plugin.select_output(type("Out", (), {"X1": 7})(), "X1") == 7  # not a digit: an attribute


def test_make_inputs_passes_the_device_and_dtype_and_takes_a_tuple_or_a_scalar_tensor(user_dir):
    (user_dir / "ins2.py").write_text(textwrap.dedent('''
        import torch

        SEEN = []

        def record(batch, device, dtype):
            SEEN.append((batch, device, dtype))
            return (torch.zeros(batch), torch.ones(batch))

        def scalar(batch, device, dtype):
            return torch.tensor(1.0)

        def number(batch, device, dtype):
            return 3
    '''))
    x = plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins2.py:record", batch=3), "meta")
    assert isinstance(x, tuple) and len(x) == 2
    seen = plugin.resolve("ins2.py:record").target.__globals__["SEEN"]
    assert seen == [(3, torch.device("meta"), torch.float32)]
    assert plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins2.py:scalar"), "cpu").dim() == 0
    with pytest.raises(ModelError, match="^" + re.escape("--inputs ins2.py:number: returned int; return a tensor, a "
                                                         "tuple or a dict of tensors") + "$"):
        plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins2.py:number"), "cpu")
    with pytest.raises(ModelError, match="^" + re.escape("--inputs ins2.py:nope: ins2.py has no 'nope'") + "$"):
        plugin.make_inputs(Case(model="userblocks.py:make", inputs="ins2.py:nope"), "cpu")


def test_a_dotted_module_is_imported_from_the_working_folder_even_when_it_is_not_on_the_path(tmp_path, monkeypatch):
    """A console script's sys.path has neither the working folder nor '': it is appended once; with '' there (python
    -m, a notebook) nothing is added."""
    (tmp_path / "cwd_only_factory.py").write_text(FILE)
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", cwd)] + [""])
    monkeypatch.delitem(sys.modules, "cwd_only_factory", raising=False)
    plugin.resolve("cwd_only_factory:make")
    assert cwd not in sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", cwd)])
    monkeypatch.delitem(sys.modules, "cwd_only_factory", raising=False)
    assert callable(plugin.resolve("cwd_only_factory:make").target)
    assert sys.path.count(cwd) == 1 and sys.path[-1] == cwd


def test_a_notebook_cells_function_is_hashed_by_its_source(monkeypatch):
    """A notebook cell's function: its file is no file on disk, but its source is in linecache, as IPython keeps it."""
    import linecache

    source = "def cell_factory(width):\n    return width\n"
    monkeypatch.setitem(linecache.cache, "<cell-7>", (len(source), None, source.splitlines(True), "<cell-7>"))
    namespace = {}
    exec(compile(source, "<cell-7>", "exec"), namespace)
    assert plugin._callable_sha(namespace["cell_factory"]) == hashlib.sha256(source.encode()).hexdigest()[:16]
