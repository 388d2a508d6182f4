"""`fastgan train RECIPE --data NAME_OR_PATH ...`: train a recipe and write a run folder.

The run folder holds config.json, metrics.jsonl, samples/step_*.png (and samples.png, the latest), curves.png and
checkpoint.pt. ``--resume RUN_DIR`` continues a run from its checkpoint. Under
``torchrun --nproc-per-node N -m fastgan train ...`` the processes share each global batch (DDP) and rank 0 writes.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
from pathlib import Path

from ..cli import CommandError
from . import ddp
from .config import AMP_MODES, DEFAULT_STEPS, DEFAULT_STEPS_OTHER, GP_METHODS, LR_DECAYS, make_config
from .recipes import RECIPES, get_recipe

#: command-line option -> hyper-parameter name
HP_OPTIONS = ("lr", "betas", "n_critic", "gp_weight", "clip", "critic_burst", "mixtures", "mix_weight", "lr_decay")
MODEL_OPTIONS = ("width", "g_width", "depth", "z_dim")
INTERVAL_OPTIONS = ("eval_every", "sample_every", "checkpoint_every", "log_every", "eval_samples")


EXAMPLES = """examples:
  fastgan train wgan-gp --data ring8                     # the main job: about a minute on a CPU
  fastgan train wgan-gp --data grid25 --amp bf16 --gp-method jvp
  fastgan train dcgan --data digits --image-size 16 --out runs/digits
  fastgan train --resume runs/digits                     # continue an interrupted run (bit-exact on CPU)
  fastgan train --resume runs/digits --steps 6000        # extend it (a linear lr decay stretches to the new end)
  torchrun --nproc-per-node 2 -m fastgan train r1 --data digits   # DDP: gloo on CPU, NCCL on GPUs
  fastgan sample runs/digits -n 64 --out digits.png ; fastgan eval runs/digits
"""


def add_arguments(parser):
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    steps_doc = ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
    parser.add_argument("recipe", nargs="?", metavar="RECIPE",
                        help=f"one of {', '.join(RECIPES)} (may be omitted with --resume)")
    parser.add_argument("--data", metavar="NAME_OR_PATH",
                        help="ring8, grid25, swissroll, digits, a folder of images or an .npy file")
    parser.add_argument("--image-size", type=int, metavar="S",
                        help="resize images to SxS (a power of two from 8 to 128; digits: 8 by default)")
    parser.add_argument("--steps", type=int, metavar="N",
                        help=f"generator steps (default: {steps_doc}, {DEFAULT_STEPS_OTHER} for other data)")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="global batch size (default: the recipe's; 256 for the 2D sets)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=AMP_MODES, default=None, help="mixed precision (default none)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/RECIPE-DATA-TIME)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--fuse", choices=("auto", "on", "off"), default="auto",
                        help="fastgan.nn fused Linear/Conv + activation blocks (auto: on CUDA only)")

    hp = parser.add_argument_group("recipe hyper-parameters (defaults: the recipe's, see its docstring)")
    hp.add_argument("--lr", type=float, help="learning rate of both players")
    hp.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam's betas")
    hp.add_argument("--n-critic", type=int, help="critic updates per generator update")
    hp.add_argument("--gp-weight", type=float, help="gradient-penalty weight (lambda; R1's gamma)")
    hp.add_argument("--gp-method", choices=GP_METHODS, help="how the penalty's gradient is computed "
                    "(default double_backward)")
    hp.add_argument("--reg-every", type=int, metavar="K", help="apply the penalty every K critic steps with "
                    "weight x K (lazy regularisation; default 1)")
    hp.add_argument("--clip", type=float, help="WGAN weight-clipping bound")
    hp.add_argument("--critic-burst", type=int, help="WGAN: critic updates in the first 25 and every 500th "
                    "generator step (0: off)")
    hp.add_argument("--mixtures", type=int, metavar="T", help="MIX+GAN: generators and critics in the mixture")
    hp.add_argument("--mix-weight", type=float, help="MIX+GAN: weight of the mixture-weight regulariser")
    hp.add_argument("--lr-decay", choices=LR_DECAYS,
                    help="learning-rate schedule: none, or linear decay to 0 at the last step")

    model = parser.add_argument_group("models (defaults depend on the data)")
    model.add_argument("--width", type=int, help="MLP hidden width / DCGAN base channels (both networks unless "
                       "--g-width is given)")
    model.add_argument("--g-width", type=int, help="the generator's width, where it differs from the critic's")
    model.add_argument("--depth", type=int, help="MLP hidden layers / DCGAN stride-2 stages")
    model.add_argument("--z-dim", type=int, help="latent dimension")

    out = parser.add_argument_group("outputs (defaults: every tenth of the run)")
    out.add_argument("--eval-every", type=int, metavar="N", help="evaluate every N steps")
    out.add_argument("--sample-every", type=int, metavar="N", help="write a sample picture every N steps")
    out.add_argument("--checkpoint-every", type=int, metavar="N", help="write a checkpoint every N steps")
    out.add_argument("--log-every", type=int, metavar="N", help="log the losses every N steps")
    out.add_argument("--eval-samples", type=int, metavar="N", help="samples drawn for the metrics (10000)")


def _given(args, names):
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _valid_image_size(size) -> bool:
    return isinstance(size, int) and 8 <= size <= 128 and size & (size - 1) == 0


def _load_data(data: str, image_size, seed: int):
    from ..data import load_dataset

    if image_size is not None and not _valid_image_size(image_size):
        raise CommandError(f"--image-size must be a power of two from 8 to 128, got {image_size}")
    try:
        dataset = load_dataset(data, image_size=image_size, seed=seed)
    except ValueError as e:
        raise CommandError(f"--data: {e}") from None
    except OSError as e:
        raise CommandError(f"--data: cannot read {data!r}: {e}") from None
    if dataset.kind == "image":
        c, h, w = dataset.shape
        if c not in (1, 3) or h != w:
            raise CommandError(f"--data: images of shape {dataset.shape} are not square 1- or 3-channel images")
        if not _valid_image_size(h):
            size = min(128, max(8, 2 ** round(math.log2(h))))
            print(f"fastgan train: resizing {h}x{w} images to {size}x{size} (set --image-size to choose)",
                  file=sys.stderr)
            dataset = load_dataset(data, image_size=size, seed=seed)
            image_size = size
    return dataset, image_size


def _default_out(recipe: str, data: str) -> Path:
    stem = Path(data).stem if ("/" in data or "." in data) else data
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe}-{stem}-{stamp}"


def _prepare_run_dir(run_dir: Path, config: dict, new: bool) -> None:
    """Create the run folder and write config.json; one-line errors for folders we cannot use."""
    from .trainer import CHECKPOINT, write_config

    if run_dir.exists() and not run_dir.is_dir():
        raise CommandError(f"--out {str(run_dir)!r} exists and is not a folder")
    if new and (run_dir / CHECKPOINT).exists():
        raise CommandError(f"--out {str(run_dir)!r} already holds a run: continue it with --resume {run_dir} "
                           f"or choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    except OSError as e:
        raise CommandError(f"cannot write the run folder {str(run_dir)!r}: {e.strerror or e}") from None


def _resume_config(args, state: dict) -> dict:
    config = dict(state["config"])
    if args.recipe is not None and get_recipe(args.recipe).NAME != config["recipe"]:
        raise CommandError(f"--resume: the run trains {config['recipe']}, not {args.recipe}")
    if args.data is not None and args.data != config["data"]:
        raise CommandError(f"--resume: the run trains on {config['data']!r}, not {args.data!r}")
    fixed = {"image_size": config.get("image_size"), "batch_size": config["batch_size"], "seed": config["seed"],
             "amp": config.get("amp", "none"), "gp_method": config.get("gp_method", "double_backward"),
             "reg_every": config.get("reg_every", 1), **config["hp"],
             **{k: config["model"].get(k) for k in MODEL_OPTIONS},
             **{k: config.get(k) for k in INTERVAL_OPTIONS}}
    for k, v in _given(args, list(fixed) + list(HP_OPTIONS)).items():
        saved = fixed.get(k)
        same = (list(v) == list(saved)) if isinstance(v, (list, tuple)) and saved is not None else v == saved
        if not same:
            flag = "--" + k.replace("_", "-")
            raise CommandError(f"--resume: {flag} {v} differs from the run's {saved}; a resumed run keeps its "
                               f"configuration (only --steps, --device and --quiet may change)")
    if args.steps is not None:
        if args.steps < 0:
            raise CommandError(f"--steps must be an integer >= 0, got {args.steps}")
        config["steps"] = args.steps
    if config["steps"] < state["step"]:
        raise CommandError(f"--steps {config['steps']} is fewer than the {state['step']} steps the run has done")
    return config


def run(args) -> int:
    from .trainer import Trainer, TrainingError, load_run

    world = ddp.env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = ddp.resolve_device(args.device, world, local_rank)
    except ValueError as e:
        raise CommandError(str(e)) from None

    # Work out the configuration (every rank alike: same arguments, same files).
    state = None
    if args.resume:
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise CommandError("--resume continues in the run's own folder; drop --out")
        try:
            state = load_run(Path(args.resume))
        except (FileNotFoundError, ValueError) as e:
            raise CommandError(f"--resume: {e}") from None
        config = _resume_config(args, state)
        dataset, _ = _load_data(config["data"], config.get("image_size"), config["seed"])
        run_dir = Path(args.resume)
    else:
        if args.recipe is None:
            raise CommandError(f"a recipe is required: one of {', '.join(RECIPES)} (or --resume RUN_DIR)")
        try:
            recipe = get_recipe(args.recipe)
        except ValueError as e:
            raise CommandError(str(e)) from None
        if args.data is None:
            raise CommandError("--data is required: ring8, grid25, swissroll, digits, a folder of images or an "
                               ".npy file")
        seed = 0 if args.seed is None else args.seed
        if not 0 <= seed < 2**63:
            raise CommandError(f"--seed must be an integer in [0, 2**63), got {seed}")
        dataset, image_size = _load_data(args.data, args.image_size, seed)
        try:
            config = make_config(
                recipe.NAME, args.data, dataset, image_size=image_size, steps=args.steps,
                batch_size=args.batch_size, seed=seed, amp=args.amp or "none", gp_method=args.gp_method,
                reg_every=args.reg_every, hp=_given(args, HP_OPTIONS), model=_given(args, MODEL_OPTIONS),
                **_given(args, INTERVAL_OPTIONS))
        except ValueError as e:
            raise CommandError(str(e)) from None
        run_dir = Path(args.out) if args.out else _default_out(recipe.NAME, args.data)
    if config["batch_size"] % world:
        raise CommandError(f"--batch-size {config['batch_size']} must be divisible by the number of processes "
                           f"({world})")

    try:
        info = ddp.init(device)
    except (ValueError, RuntimeError) as e:
        raise CommandError(f"cannot start distributed training: {e}") from None
    try:
        # Rank 0 alone touches the run folder; the others learn whether that worked.
        error = None
        if info.is_main:
            try:
                _prepare_run_dir(run_dir, config, new=state is None)
            except CommandError as e:
                error = str(e)
        error = ddp.broadcast_object(error, info)
        if error is not None:
            raise CommandError(error)

        try:
            trainer = Trainer(config, run_dir, device, dataset, info=info, resume_state=state,
                              progress=not args.quiet, fuse=None if args.fuse == "auto" else args.fuse == "on")
            result = trainer.fit()
        except TrainingError as e:
            raise CommandError(str(e)) from None
        except OSError as e:  # the run folder vanished, the disk filled up, ...: one line, not a traceback
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise CommandError(f"training stopped: {e.strerror or e}{where}; once that is fixed, continue from the "
                               f"last checkpoint with: fastgan train --resume {run_dir}") from None
        except KeyboardInterrupt:
            if info.is_main:
                print(f"fastgan train: stopped; continue with: fastgan train --resume {run_dir}", file=sys.stderr)
            raise
        if info.is_main:
            print(summary(run_dir, config, result))
    finally:
        ddp.shutdown(info)
    return 0


def summary(run_dir: Path, config: dict, result: dict) -> str:
    from .plots import component_groups

    lines = [f"run folder: {run_dir}"]
    steps, elapsed = result["step"], result["elapsed_s"]
    lines.append(f"{config['recipe']} on {config['data']}: {steps} steps in {elapsed:.1f} s"
                 + (f" ({steps / elapsed:.1f} steps/s)" if elapsed > 0 else ""))
    losses = result.get("losses")
    if losses:
        groups = component_groups(losses)  # per-component series (mixture weights): one bracketed list per name
        scalars = [f"{k} {losses[k]:.4g}" for members in groups.values() for index, k in members if index is None]
        vectors = [f"{name} [{' '.join(f'{losses[k]:.3g}' for index, k in members if index is not None)}]"
                   for name, members in groups.items() if members[-1][0] is not None]
        lines.append("losses: " + ", ".join(scalars + vectors))
    if result.get("eval"):
        lines.append("metrics: " + format_metrics(result["eval"]))
    return "\n".join(lines)


def format_metrics(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        if k == "n_modes":
            continue
        if k == "modes_covered" and "n_modes" in metrics:
            parts.append(f"modes_covered {v}/{metrics['n_modes']}")
        elif k == "classes_covered":
            parts.append(f"classes_covered {v}/10")
        elif isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts)
