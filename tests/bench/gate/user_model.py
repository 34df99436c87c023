"""A user's model and suite file for the gate's tests in throw-away repositories (``check --suite``, ``bisect``,
the CI recipe): ``SLOWER`` gives the model one more ``nn.Linear``, whose parameters and FLOPs a hand count
gives (``parameters``)."""

from __future__ import annotations

from pathlib import Path

from git_cmd import git

WIDTH, DEPTH, BATCH = 32, 2, 8
MODEL = '''from torch import nn


def make(width, depth):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)
'''
SLOWER = MODEL.replace("    return nn.Sequential(*layers)",
                       "    layers += [nn.Linear(width, width)]  # one more layer: more work per step\n"
                       "    return nn.Sequential(*layers)")
SUITE = f'''description = "my model's CI gate"

[[grid]]
model = "../model.py:make"
width = {WIDTH}
depth = {DEPTH}
batch = {BATCH}
'''


def parameters(layers: int) -> int:
    """Weights and biases of ``layers`` square ``nn.Linear(WIDTH, WIDTH)``, by hand."""
    return layers * (WIDTH * WIDTH + WIDTH)


def user_repository(root: Path) -> Path:
    """``root``/user: model.py and sweeps/ci.toml, one commit on ``main``; nothing of mlpbench in it."""
    repo = root / "user"
    (repo / "sweeps").mkdir(parents=True)
    (repo / "model.py").write_text(MODEL)
    (repo / "sweeps" / "ci.toml").write_text(SUITE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the model")
    return repo
