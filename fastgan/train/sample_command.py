"""`fastgan sample RUN_DIR -n N --out FILE`: samples of a trained run's generator (its latest checkpoint).

2D data: an .npy array [N, 2]. Images: an .npy array [N, C, H, W] with values in [-1, 1] and a PNG grid (of the first
400 at most).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cli import CommandError

GRID_MAX = 400


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fastgan train")
    parser.add_argument("-n", type=int, default=1000, metavar="N", help="number of samples (default 1000)")
    parser.add_argument("--out", metavar="FILE", help="output file: FILE.npy (and FILE.png for images); "
                        "default RUN_DIR/samples-N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def load_generator(run_dir, device_arg: str):
    """(config, generator in eval mode on the device, step, device) from a run folder; CommandError if unusable."""
    from . import ddp
    from .trainer import build_models, load_run

    try:
        device = ddp.resolve_device(device_arg, 1, 0)
    except ValueError as e:
        raise CommandError(str(e)) from None
    try:
        state = load_run(Path(run_dir))
    except (FileNotFoundError, ValueError) as e:
        raise CommandError(str(e)) from None
    config = state["config"]
    try:
        G, _ = build_models(config)
        G.load_state_dict(state["G"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise CommandError(f"the checkpoint in {str(run_dir)!r} does not fit its configuration: "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return config, G.to(device).eval(), int(state["step"]), device


def run(args) -> int:
    from .plots import save_image_grid
    from .trainer import generate

    if args.n < 1:
        raise CommandError(f"-n must be a positive integer, got {args.n}")
    if not 0 <= args.seed < 2**63:
        raise CommandError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    config, G, step, device = load_generator(args.run_dir, args.device)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"samples-{args.n}"
    stem = out.with_suffix("") if out.suffix.lower() in (".npy", ".png") else out
    samples = generate(G, config, args.n, torch.Generator().manual_seed(args.seed), device)
    written = []
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        npy = stem.parent / (stem.name + ".npy")
        np.save(npy, samples.numpy())
        written.append(npy)
        if config["data_kind"] == "image":
            written.append(save_image_grid(samples[:GRID_MAX], stem.parent / (stem.name + ".png")))
    except OSError as e:
        raise CommandError(f"cannot write {str(out)!r}: {e.strerror or e}") from None
    print(f"{args.n} samples of {config['recipe']} on {config['data']} (step {step}): "
          + ", ".join(str(p) for p in written))
    return 0
