"""Fused optimizers: torch.optim.RMSprop and Adam with an optional WGAN clamp, one pass over memory per step.

    opt = fastgan.optim.RMSprop(critic.parameters(), lr=5e-5, clip=0.01)   # WGAN: RMSprop + weight clipping
    opt = fastgan.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
"""
from fastgan.optim.optimizers import Adam, RMSprop

__all__ = ["Adam", "RMSprop"]
