"""Image sources: scikit-learn's 8x8 digits, a folder of image files, an ``.npy`` array.

Every loader returns images as [N, C, H, W] with values in [-1, 1] (the range a tanh generator produces). Folder
images are kept as uint8 (a quarter of the memory of float32) and converted per batch by ``Dataset``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of float images [N, C, H, W] to [N, C, size, size].

    Downsampling uses antialiasing (plain bilinear would alias); both directions stay inside the input's value
    range because bilinear weights are convex.
    """
    if x.shape[-2:] == (size, size):
        return x
    down = size < max(x.shape[-2:])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=down)


def load_digits_images(image_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's ``load_digits`` (1797 images, 8x8, values 0..16) as ([N, 1, S, S] in [-1, 1], labels [N])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1)  # [N, 1, 8, 8], 0..16
    x = x / 8.0 - 1.0
    if image_size is not None:
        x = resize_images(x, image_size).clamp_(-1.0, 1.0)
    return x.contiguous(), torch.from_numpy(d.target.astype(np.int64))


def _list_images(folder: Path) -> list[Path]:
    # Recursive, so that class-per-subfolder layouts (torchvision ImageFolder) work; sorted for reproducibility.
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _to_array(img, size: int, rgb: bool) -> np.ndarray:
    """One PIL image -> uint8 [C, size, size]: resize the short side to ``size``, centre-crop the long side."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: rescale to 8 bit ourselves, PIL's convert("L") would clip at 255.
        a = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    img = img.convert("RGB" if rgb else "L")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC if scale > 1 else Image.LANCZOS)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_image_folder(folder: Path, image_size: int | None = None) -> torch.Tensor:
    """All png/jpg images under ``folder`` (recursively) as uint8 [N, C, S, S].

    C is 1 when every image is greyscale, else 3 (greyscale images are then expanded to RGB). Non-square images
    are resized on their short side and centre-cropped (the usual DCGAN preprocessing), so nothing is distorted.
    ``image_size=None`` takes the short side of the first image.
    """
    from PIL import Image, UnidentifiedImageError

    files = _list_images(folder)
    if not files:
        raise ValueError(f"dataset folder {str(folder)!r} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    images = []
    for f in files:
        try:
            img = Image.open(f)
            img.load()
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {str(f)!r}: {e}") from e
        images.append(img)
    rgb = any(img.mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") for img in images)
    if image_size is None:
        image_size = min(images[0].size)
    out = np.stack([_to_array(img, image_size, rgb) for img in images])
    for img in images:
        img.close()
    return torch.from_numpy(out)


def load_npy(path: Path, image_size: int | None = None) -> tuple[str, torch.Tensor]:
    """An ``.npy`` array as ("2d", float32 [N, 2]) or ("image", [N, C, H, W]).

    Images may be [N, H, W], [N, C, H, W] or [N, H, W, C] with C in {1, 3}; uint8 arrays are read as 0..255,
    float arrays must lie in [0, 1] or [-1, 1] and are mapped to [-1, 1] (an array inside [0, 1] is taken as
    [0, 1]). Images come back as uint8 when the file holds uint8 (converted per batch), else float32.
    """
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot read {str(path)!r} as a numpy array: {e}") from e
    if a.ndim == 0 or len(a) == 0:
        raise ValueError(f"array in {str(path)!r} is empty (shape {a.shape})")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"array in {str(path)!r} has unsupported dtype {a.dtype}")
    if a.ndim == 2:
        if a.shape[1] != 2:
            raise ValueError(f"array in {str(path)!r} has shape {a.shape}: a 2-D array must be points [N, 2]")
        return "2d", torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
            a = a.transpose(0, 3, 1, 2)
        elif a.shape[1] not in (1, 3):
            raise ValueError(f"array in {str(path)!r} has shape {a.shape}: images need 1 or 3 channels "
                             "as [N, C, H, W] or [N, H, W, C]")
    else:
        raise ValueError(f"array in {str(path)!r} has shape {a.shape}: expected [N, 2] points or "
                         "[N, H, W], [N, C, H, W], [N, H, W, C] images")
    if a.dtype == np.uint8 and image_size in (None, a.shape[2]) and a.shape[2] == a.shape[3]:
        return "image", torch.from_numpy(np.ascontiguousarray(a))
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"integer images in {str(path)!r} must lie in 0..255 (found {lo:g}..{hi:g})")
        x = x / 127.5 - 1.0
    else:
        if not torch.isfinite(x).all():
            raise ValueError(f"images in {str(path)!r} contain NaN or infinity")
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi <= 1.0:
            x = x * 2.0 - 1.0
        elif lo < -1.0 or hi > 1.0:
            raise ValueError(f"float images in {str(path)!r} must lie in [0, 1] or [-1, 1] "
                             f"(found {lo:g}..{hi:g})")
    if image_size is not None:
        x = resize_images(x, image_size).clamp_(-1.0, 1.0)
    return "image", x.contiguous()


def path_like(name: str) -> bool:
    """Whether a dataset argument is meant as a path rather than a built-in name."""
    return os.sep in name or (os.altsep or os.sep) in name or name.lower().endswith(".npy") or os.path.exists(name)
