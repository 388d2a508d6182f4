"""Training recipes: the classic GANs as short PyTorch loops built from fastgan's ops.

A recipe is a module with:

* ``NAME`` (the command-line name) and a docstring giving each default with its source;
* ``defaults(kind, image_size) -> dict``: the hyper-parameters for ``"2d"`` or ``"image"`` data;
* ``setup(run)``: creates the optimizers as ``run.opt_g`` / ``run.opt_d`` (and may adjust the models);
* ``train_step(run) -> dict``: one generator step (with its critic steps), returning the losses to log;
* optionally ``BATCH_SIZE`` ({kind: size}), ``MODEL_OPTIONS`` ({kind: options for the model builder, such as
  ``critic_batch_norm`` or ``spectral_norm``}), ``build_models(make_g, make_d, config)`` (e.g. MIX+GAN's
  mixtures), ``generate(G, z)`` (how a trained generator turns latents into samples), ``sample_groups(G, n)``
  (which component drew each of ``n`` samples of one ``generate`` call, and the components' legend labels: the
  sample pictures then colour 2D points by component and give each component its own row of images) and ``DDP_WRAP = False`` for a recipe whose losses do
  not go through the models' forward (the trainer then averages the gradients over processes itself).

``run`` is fastgan.train.trainer.Run: ``run.G``, ``run.D``, ``run.hp``, ``run.real()``, ``run.z()``,
``run.autocast()``, ``run.update(opt, loss)``... Its docstring gives the plain PyTorch each stands for, so a
``train_step`` can be copied into any training script.
"""

from __future__ import annotations

import importlib

#: command-line name -> module
RECIPES = {
    "dcgan": "dcgan",
    "wgan": "wgan",
    "wgan-gp": "wgan_gp",
    "wgan-lp": "wgan_lp",
    "r1": "r1",
    "sngan": "sngan",
    "lsgan": "lsgan",
    "mixgan": "mixgan",
}


def _default_build_models(make_g, make_d, config):
    return make_g(), make_d()


def _default_generate(G, z):
    return G(z)


class Recipe:
    """A recipe module with its optional parts filled in."""

    def __init__(self, module):
        self.module = module
        self.NAME = module.NAME
        self.BATCH_SIZE = dict(getattr(module, "BATCH_SIZE", {}))
        self.MODEL_OPTIONS = dict(getattr(module, "MODEL_OPTIONS", {}))
        self.setup = module.setup
        self.train_step = module.train_step
        self.build_models = getattr(module, "build_models", _default_build_models)
        self.generate = getattr(module, "generate", _default_generate)
        self.sample_groups = getattr(module, "sample_groups", None)
        self.DDP_WRAP = bool(getattr(module, "DDP_WRAP", True))

    def defaults(self, kind: str, image_size: int | None) -> dict:
        hp = dict(self.module.defaults(kind, image_size))
        hp.setdefault("lr_decay", "none")
        return hp


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError listing the recipes for an unknown one."""
    key = str(name).lower().replace("_", "-")
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return Recipe(importlib.import_module(f"{__name__}.{RECIPES[key]}"))


__all__ = ["RECIPES", "Recipe", "get_recipe"]
