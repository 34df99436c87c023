"""What a run records to rebuild a user's model (``bench.case.plugin.recipe``, ``bench.runs.recipe``): the import path, the
working folder, and the defining file copied into the run folder, byte for byte as it was measured (a later edit
does not reach the copy). References: the bytes written, and hashlib."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from edited_model import MODEL, measure_run, write_model  # tests/bench/ is on sys.path

from bench.case import plugin
from bench.runs.recipe import SOURCE_DIR, Kind, ModelRecipe, RecipeBook, copy_sources
from bench.runs import load_run


def test_a_run_keeps_the_models_file_its_path_and_working_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    source = write_model(project, 250)
    measured = source.read_bytes()
    run = measure_run(project, tmp_path / "run", monkeypatch)
    write_model(project, 300)  # edited after the run: the copy keeps what was measured
    sha = hashlib.sha256(measured).hexdigest()[:plugin.SHA_CHARS]
    recipe = json.loads((run / "meta.json").read_text())["models"][MODEL]
    assert recipe["model"] == MODEL and recipe["kind"] == Kind.FILE
    assert recipe["cwd"] == str(project.resolve()) and recipe["source_sha"] == sha
    assert recipe["files"] == ["edited.py"] and recipe["model_args"] == [""]
    assert (run / SOURCE_DIR / sha / "edited.py").read_bytes() == measured
    step = load_run(run).summary.query("phase == 'step'").iloc[0]
    assert step["model_source_sha"] == sha  # the recipe's hash is the one the cases record
    assert RecipeBook.of(load_run(run).meta).get(MODEL).copied(run)


def test_a_dotted_module_keeps_its_package_so_that_it_imports_the_same_way(tmp_path, monkeypatch):
    package = tmp_path / "project" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text("from torch import nn\n\ndef make(width):\n    return nn.Linear(width, width)\n")
    monkeypatch.chdir(tmp_path / "project")
    found = plugin.recipe("pkg.blocks:make")
    assert found["kind"] == Kind.MODULE and found["import_root"] == str((tmp_path / "project").resolve())
    assert sorted(found["files"]) == ["pkg/__init__.py", "pkg/blocks.py"]


def test_a_module_object_has_no_recipe_another_process_can_follow():
    from torch import nn

    found = plugin.recipe(plugin.register(nn.Sequential(nn.Linear(4, 4))))
    assert found["kind"] == Kind.NONE and "module object" in found["why"]
    assert ModelRecipe.from_dict(found).copied(".") is False


def test_pytest_collects_the_users_tests_and_never_a_runs_copy_of_them(tmp_path):
    """A model defined in a test file (``--mlpbench-out runs`` of the pytest fixture) is copied into the run folder
    under the project; pytest's own collection, run on the project, must find the user's test once, not the copy
    too (a second ``test_user`` module is an "import file mismatch" error that stops the user's suite)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_user.py").write_text("def make():\n    return None\n\n\ndef test_it():\n    assert True\n")
    recipe = ModelRecipe(model="test_user.py:make", kind=Kind.FILE, source_sha="0123abcd",
                         import_root=str(project), files=("test_user.py",))
    assert copy_sources(recipe, project / "runs" / "r1").copied(project / "runs" / "r1")
    found = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                           cwd=project, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "test_user.py::test_it" in found.stdout and "1 test collected" in found.stdout, found.stdout
