"""A run's configuration: the recipe's defaults for the data, completed and checked, as one JSON-able dict.

The dict is what ``config.json`` holds and what a checkpoint carries, so ``fastgan sample``, ``fastgan eval`` and
``--resume`` rebuild exactly the models and the loop that were trained. Every default that depends on the data is
resolved here, in one place (see DEFAULT_STEPS and model_defaults).
"""

from __future__ import annotations

import math
import numbers

import torch

from .recipes import get_recipe

#: Default ``--steps`` (generator steps) per built-in data set, chosen so that on a 2-core CPU the run meets the
#: quality targets of docs/results.md in the time stated there (ring8: the README's one-minute main job).
DEFAULT_STEPS = {"ring8": 1500, "grid25": 3000, "swissroll": 2000, "digits": 3000}
#: Default for data given by path (folders of images, .npy files).
DEFAULT_STEPS_OTHER = 10_000

#: Samples drawn for the metrics (the VEEGAN/PacGAN protocol evaluates 2D mixtures on 10,000 samples).
EVAL_SAMPLES = 10_000

#: Batch size when neither the command line nor the recipe sets one: gan_toy.py's BATCH_SIZE = 256 for the 2D sets,
#: the m = 64 of WGAN / WGAN-GP's Algorithm 1 for images.
DEFAULT_BATCH = {"2d": 256, "image": 64}

AMP_MODES = ("none", "bf16", "fp16")
GP_METHODS = ("double_backward", "jvp", "finite_difference")

LR_DECAYS = ("none", "linear")


def data_key(name: str) -> str | None:
    """The built-in data set a ``--data`` value names (aliases resolved), or None for a path."""
    from ..data import ALIASES, KNOWN_DATASETS

    key = ALIASES.get(str(name).lower(), str(name).lower())
    return key if key in KNOWN_DATASETS else None


def model_defaults(kind: str, shape: tuple) -> dict:
    """Architecture defaults for the data.

    2D: gan_toy.py's ReLU MLPs (Generator 2 -> DIM -> DIM -> DIM -> 2, noise dimension 2, DIM = 512) with the
    generator at gan_toy.py's width 512 but the critic at 128: the critic runs five times per generator step,
    under a double backward, so its width sets the cost of a step, while the generator's width sets how sharply it
    can fold its Gaussian noise onto separate modes (samples left between modes are what the high-quality fraction
    counts against). Measured on 2 CPU cores (docs/results.md): ring8 reached 93% high-quality samples in 54 s with
    G 512 / D 128, 84% in 56 s with both at 128, 92% in 140 s with both at 512. PyTorch's default initialisation
    (gan_toy.py's He initialisation measured no better here). ``g_width`` None: the generator takes ``width``.
    Images: the DCGAN networks (fastgan.models.DCGANGenerator/DCGANCritic), 128-dimensional noise; width 64 (the
    DCGAN paper's), 32 for images of 16x16 or less such as the digits.
    """
    if kind == "2d":
        return {"arch": "mlp", "z_dim": 2, "width": 128, "g_width": 512, "depth": 3, "dim": int(shape[0])}
    size = int(shape[-1])
    return {"arch": "dcgan", "z_dim": 128, "image_size": size, "channels": int(shape[0]),
            "width": 32 if size <= 16 else 64, "g_width": None, "depth": None}


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_hyperparameters(recipe_name: str, hp: dict) -> dict:
    """Validate the resolved hyper-parameters (names as the recipes' defaults), returning normalised values."""
    out = dict(hp)
    for k, v in hp.items():
        flag = "--" + k.replace("_", "-")
        if k == "lr":
            if _check_nonnegative(v, flag) <= 0:
                raise ValueError(f"{flag} must be > 0, got {v!r}")
            out[k] = float(v)
        elif k == "betas":
            if not (isinstance(v, (list, tuple)) and len(v) == 2
                    and all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in v)):
                raise ValueError(f"--betas must be two numbers in [0, 1), got {v!r}")
            out[k] = [float(v[0]), float(v[1])]
        elif k in ("n_critic", "mixtures"):
            out[k] = _check_positive_int(v, flag)
        elif k == "critic_burst":
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{flag} must be an integer >= 0, got {v!r}")
            out[k] = int(v)
        elif k in ("gp_weight", "mix_weight"):
            out[k] = _check_nonnegative(v, flag)
        elif k == "clip":
            if _check_nonnegative(v, flag) <= 0:
                raise ValueError(f"{flag} must be > 0, got {v!r}")
            out[k] = float(v)
        elif k == "lr_decay":
            if v not in LR_DECAYS:
                raise ValueError(f"--lr-decay must be one of {', '.join(LR_DECAYS)}, got {v!r}")
        else:
            raise ValueError(f"recipe {recipe_name} has no hyper-parameter {k!r}")
    return out


def make_config(recipe: str, data: str, dataset, *, image_size: int | None = None, steps: int | None = None,
                batch_size: int | None = None, seed: int = 0, amp: str = "none", gp_method: str | None = None,
                reg_every: int | None = None, hp: dict | None = None, model: dict | None = None,
                eval_every: int | None = None, sample_every: int | None = None,
                checkpoint_every: int | None = None, log_every: int | None = None,
                eval_samples: int | None = None) -> dict:
    """The complete configuration of a new run.

    ``hp`` and ``model`` hold only the values the user set (None values are ignored); everything else comes from
    the recipe (``defaults(kind, image_size)``) and ``model_defaults``. Raises ValueError with a one-line message
    for any bad value, including a hyper-parameter the recipe does not take.
    """
    rec = get_recipe(recipe)
    kind = dataset.kind
    shape = tuple(int(s) for s in dataset.shape)
    size = int(shape[-1]) if kind == "image" else None
    key = data_key(data) if not _is_path(data) else None

    defaults = rec.defaults(kind, size)
    given = {k: v for k, v in (hp or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        takes = ", ".join("--" + k.replace("_", "-") for k in defaults)
        raise ValueError(f"recipe {rec.NAME} does not take {flags} (its hyper-parameters: {takes})")
    hyper = check_hyperparameters(rec.NAME, {**defaults, **given})

    m = model_defaults(kind, shape)
    m.update(rec.MODEL_OPTIONS.get(kind, {}))
    for k, v in (model or {}).items():
        if v is None:
            continue
        if k not in ("width", "g_width", "depth", "z_dim"):
            raise ValueError(f"unknown model option {k!r}")
        m[k] = _check_positive_int(v, "--" + k.replace("_", "-"))
    if (model or {}).get("width") is not None and (model or {}).get("g_width") is None:
        m["g_width"] = None  # --width alone sizes both networks
    if m["arch"] == "dcgan" and m.get("depth") is not None:
        max_depth = int(math.log2(m["image_size"])) - 2
        if m["depth"] > max_depth:
            raise ValueError(f"--depth must be at most {max_depth} for {m['image_size']}x{m['image_size']} images, "
                             f"got {m['depth']}")

    steps = DEFAULT_STEPS.get(key, DEFAULT_STEPS_OTHER) if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"--steps must be an integer >= 0, got {steps!r}")
    batch = batch_size if batch_size is not None else rec.BATCH_SIZE.get(kind, DEFAULT_BATCH[kind])
    batch = _check_positive_int(batch, "--batch-size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {seed!r}")
    if amp not in AMP_MODES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if gp_method is not None and gp_method not in GP_METHODS:
        raise ValueError(f"--gp-method must be one of {', '.join(GP_METHODS)}, got {gp_method!r}")
    penalised = "gp_weight" in defaults
    if gp_method not in (None, "double_backward") and not penalised:
        raise ValueError(f"--gp-method: recipe {rec.NAME} has no gradient penalty")
    if reg_every is not None:
        reg_every = _check_positive_int(reg_every, "--reg-every")
        if reg_every > 1 and not penalised:
            raise ValueError(f"--reg-every: recipe {rec.NAME} has no gradient penalty to apply lazily")

    every = max(1, int(steps) // 10) if steps else 1
    intervals = {}
    for name, value, default in (("eval_every", eval_every, every), ("sample_every", sample_every, every),
                                 ("checkpoint_every", checkpoint_every, every),
                                 ("log_every", log_every, max(1, min(50, int(steps) // 100 or 1)))):
        intervals[name] = default if value is None else _check_positive_int(value, "--" + name.replace("_", "-"))
    n_eval = EVAL_SAMPLES if eval_samples is None else _check_positive_int(eval_samples, "--eval-samples")
    if n_eval < 2:
        raise ValueError(f"--eval-samples must be at least 2, got {n_eval}")

    from .. import __version__

    return {
        "recipe": rec.NAME,
        "data": str(data),
        "data_kind": kind,
        "data_shape": list(shape),
        "image_size": image_size,
        "steps": int(steps),
        "batch_size": batch,
        "seed": int(seed),
        "amp": amp,
        "gp_method": gp_method or "double_backward",
        "reg_every": reg_every or 1,
        "hp": hyper,
        "model": m,
        **intervals,
        "eval_samples": n_eval,
        "versions": {"fastgan": str(__version__), "torch": str(torch.__version__)},
    }


def _is_path(data: str) -> bool:
    from ..data.images import path_like

    return data_key(data) is None and path_like(str(data))
