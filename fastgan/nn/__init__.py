"""Critic building blocks on fastgan's fused ops, and a converter for existing models.

    critic = fastgan.nn.fuse_activations(critic)     # Conv2d/Linear + activation pairs -> fused blocks

Layers: BiasAct, FusedLeakyReLU, Conv2dAct, LinearAct (fastgan.nn.layers); converter: fuse_activations
(fastgan.nn.fuse); GroupedSequential runs T same-architecture nn.Sequential models as one (fastgan.nn.grouped,
MixtureGAN's batched execution).
"""
from fastgan.nn.fuse import FusionReport, fuse_activations
from fastgan.nn.grouped import GroupedSequential, GroupingUnsupported
from fastgan.nn.layers import BiasAct, Conv2dAct, FusedLeakyReLU, LinearAct
from fastgan.nn import utils  # noqa: E402  (spectral_norm, spectral_norm_all, cached)

__all__ = ["BiasAct", "Conv2dAct", "FusedLeakyReLU", "FusionReport", "GroupedSequential", "GroupingUnsupported",
           "LinearAct", "fuse_activations"]
