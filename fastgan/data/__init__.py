"""Datasets for GAN training: the WGAN-GP 2D toys, scikit-learn digits, image folders and ``.npy`` arrays.

Nothing is downloaded. Entry point: ``load_dataset(name_or_path, image_size=None, n=None, seed=0)``.
"""

from .dataset import ALIASES, KNOWN_DATASETS, Dataset, load_dataset
from .images import load_digits_images, resize_images
from .toy import (GRID25_SIGMA, RING8_SIGMA, grid25_centres, ring8_centres, sample_grid25, sample_ring8,
                  sample_swissroll)

__all__ = [
    "ALIASES", "KNOWN_DATASETS", "Dataset", "load_dataset", "load_digits_images", "resize_images",
    "GRID25_SIGMA", "RING8_SIGMA", "grid25_centres", "ring8_centres", "sample_grid25", "sample_ring8",
    "sample_swissroll",
]
