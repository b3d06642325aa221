"""The course's own initial parameters for the recipes that reproduce its assignments.

The course's numbers (shared/data/COURSE_NUMBERS.md) come from its `initialize_parameters`:
`np.random.seed(s)`, then for each layer in turn `W = randn(n_l, n_l-1) * scale(n_l-1)` and
`b = 0`. dlcli draws its own initialisation from its seed streams, so the cost curves agree
with the notebooks' only from the course's draws: `dlcli course-init RECIPE` writes them as a
params.npz for `model.init_from`. The scale is the recipe's `model.init` (small 0.01, xavier
1/sqrt(n_prev), he sqrt(2/n_prev), as the course's functions draw them); the seed is the
course's for that assignment.
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import BadInput

# recipe name -> the np.random.seed of the assignment's initialize_parameters
COURSE_SEEDS = {
    "cat-2layer": 1, "cat-4layer": 1, "planar": 3, "circles-init-he": 3,
    "football-none": 3, "football-l2": 3, "football-dropout": 3,
    "moons-gd": 3, "moons-momentum": 3, "moons-adam": 3,
}
SCALES = {"small": lambda n: 0.01, "xavier": lambda n: 1 / math.sqrt(n),
          "he": lambda n: math.sqrt(2 / n)}


def course_init(recipe, seed: int | None = None) -> dict:
    """{"<i>.W", "<i>.b"} for the recipe's dense layers, drawn as the course draws them."""
    import numpy as np

    from .api import as_recipe, prepare
    recipe = as_recipe(recipe)
    seed = COURSE_SEEDS.get(recipe.name) if seed is None else seed
    if seed is None:
        raise BadInput(f"{recipe.name} is not one of the course's recipes "
                       f"({', '.join(COURSE_SEEDS)}); give --seed", key="name")
    scale = SCALES.get(recipe.model.init)
    if scale is None:
        raise recipe.error("model.init", f"the course draws no {recipe.model.init} "
                           f"initialisation; one of {', '.join(SCALES)}")
    model, _ = prepare(recipe)
    state = model.state_dict()
    dense = sorted((k[:-2] for k in state if k.endswith(".W") and state[k].ndim == 2
                    and k[:-2].isdigit()), key=int)  # in layer order, as the course draws
    rs = np.random.RandomState(seed)  # the legacy generator np.random.seed drives
    out = {}
    for layer in dense:
        n, n_prev = state[f"{layer}.W"].shape
        out[f"{layer}.W"] = rs.randn(n, n_prev) * scale(n_prev)
        out[f"{layer}.b"] = np.zeros((n, 1))
    return out


def course_init_cli(recipe_path, out=None, seed=None) -> int:
    from .api import as_recipe
    from .runs import atomic_write_npz
    recipe = as_recipe(recipe_path)
    state = course_init(recipe, seed)
    recipe_path = Path(recipe_path)
    out = Path(out) if out else recipe_path.parent / f"{recipe_path.stem}_course_init.npz"
    atomic_write_npz(out, state)
    try:
        relative = out.resolve().relative_to(recipe_path.resolve().parent)
    except ValueError:
        relative = out.resolve()
    print(f"wrote {out}: the course's initial parameters ({', '.join(state)}); train from them with\n"
          f"  dlcli train {recipe_path} --set model.init_from={relative}")
    return 0
