"""What a run keeps to rebuild a user's model later: the recipe in meta.json and a copy of its source.

A run of ``--model models/x.py:make`` records, per model name (meta.json ``models``):

* ``model``: the import path as the cases record it (``models/x.py:make``, ``my_pkg.blocks:make``);
* ``kind``: ``file`` (a ``PATH.py:FACTORY``, loaded by path), ``module`` (a ``MODULE:FACTORY``, imported from
  ``import_root``), or ``none`` (nothing another process can rebuild: ``why`` says what);
* ``source_sha``: the hash of the defining file, as the cases' ``model_source_sha``;
* ``files``: the source files copied into the run folder, relative to ``import_root`` (a module's file and the
  ``__init__.py`` of each package above it), under ``.model_source/<source_sha>/``;
* ``cwd``: the working folder the run ran in (a relative path resolves there, never in the mlpbench tree);
* ``source_dir``: the folder the defining file lay in (its neighbours, which it may import, are not copied);
* ``model_args``: the factory options the run's cases gave it (each case also records its own).

``compare --confirm`` rebuilds each side's model from its own run's copy (``bench.commands.compare``). No torch here:
the recipe itself comes from ``bench.case.plugin.recipe``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

# <run>/.model_source/<source_sha>/<files>: a hidden folder, so that pytest (whose norecursedirs skips ".*") never
# collects a copied test_*.py beside the user's own, nor imports it in its place ("import file mismatch")
SOURCE_DIR = ".model_source"


class Kind:
    FILE = "file"
    MODULE = "module"
    NONE = "none"


@dataclass(frozen=True)
class ModelRecipe:
    model: str
    kind: str
    source_sha: str = ""
    import_root: str = ""  # absolute: the folder ``files`` are relative to
    files: tuple[str, ...] = ()
    cwd: str = ""
    source_dir: str = ""
    model_args: tuple[str, ...] = ()
    why: str = ""  # kind none: why nothing can rebuild it

    @property
    def attr(self) -> str:
        return self.model.rpartition(":")[2]

    def copy_root(self, run_dir: Path) -> Path:
        return Path(run_dir) / SOURCE_DIR / self.source_sha

    def copied(self, run_dir: Path) -> bool:
        """Every recorded file is in the run folder."""
        return bool(self.files) and all((self.copy_root(run_dir) / f).is_file() for f in self.files)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["files"], out["model_args"] = list(self.files), list(self.model_args)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "ModelRecipe":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["files"] = tuple(values.get("files") or ())
        values["model_args"] = tuple(values.get("model_args") or ())
        return cls(**values)


@dataclass
class RecipeBook:
    """The recipes of one run, by model name (meta.json ``models``)."""

    recipes: dict[str, ModelRecipe] = field(default_factory=dict)

    @classmethod
    def of(cls, meta) -> "RecipeBook":
        models = meta.get("models") or {}
        return cls({name: ModelRecipe.from_dict(r) for name, r in models.items() if isinstance(r, Mapping)})

    def get(self, model: str) -> ModelRecipe | None:
        return self.recipes.get(model)


def copy_sources(recipe: ModelRecipe, run_dir: Path) -> ModelRecipe:
    """The recipe's files copied under ``<run_dir>/.model_source/<sha>/``; a file that cannot be read is left out of
    the recipe's ``files`` (the recipe then says the copy is incomplete through ``copied``)."""
    if recipe.kind == Kind.NONE or not recipe.files:
        return recipe
    root, kept = recipe.copy_root(run_dir), []
    for relative in recipe.files:
        target = root / relative
        try:
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(recipe.import_root) / relative, target)
        except OSError:
            continue
        kept.append(relative)
    if len(kept) == len(recipe.files):
        return recipe
    return ModelRecipe(**{**asdict(recipe), "files": tuple(kept),
                          "why": f"could not copy {', '.join(sorted(set(recipe.files) - set(kept)))}"})
