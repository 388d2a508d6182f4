"""Training: the `fastgan train / sample / eval` commands, their recipes and the loop around them.

    fastgan train wgan-gp --data ring8             # the README's main job: about a minute on a CPU

From Python::

    from fastgan.data import load_dataset
    from fastgan.train import Trainer, make_config
    data = load_dataset("ring8")
    config = make_config("wgan-gp", "ring8", data, steps=1000)
    result = Trainer(config, "runs/ring8", torch.device("cpu"), data).fit()   # {"eval": {...}, ...}

Recipes live in fastgan/train/recipes/ (one short PyTorch loop each); checkpoints (atomic, weights_only-loadable)
in fastgan.train.checkpoint; figures in fastgan.train.plots.
"""

from .config import DEFAULT_STEPS, make_config
from .recipes import RECIPES, get_recipe
from .trainer import Run, Trainer, build_models, evaluate, generate, load_run

__all__ = ["DEFAULT_STEPS", "RECIPES", "Run", "Trainer", "build_models", "evaluate", "generate", "get_recipe",
           "load_run", "make_config"]
