"""Generator and critic networks: gan_toy.py's MLPs for 2D data and DCGAN for square images."""

from .dcgan import DCGANCritic, DCGANGenerator
from .layers import ACTIVATIONS, make_activation
from .mlp import MLPCritic, MLPGenerator

__all__ = ["ACTIVATIONS", "DCGANCritic", "DCGANGenerator", "MLPCritic", "MLPGenerator", "make_activation"]
