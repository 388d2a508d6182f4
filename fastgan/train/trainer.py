"""The loop around a recipe: models, data, mixed precision, DDP, progress bar, metrics, pictures, checkpoints.

A recipe (fastgan/train/recipes/) only says what one generator step is; ``Trainer`` runs ``config["steps"]`` of
them and, every so often, logs the losses to ``metrics.jsonl``, evaluates the generator, draws its samples and the
loss curves, and writes an atomic checkpoint from which ``--resume`` continues bit-exactly (on CPU with a fixed
seed, an interrupted and resumed run ends with the same parameters as an uninterrupted one).

Randomness: the models are initialised from ``torch.manual_seed(seed)``; every batch, latent and penalty mixing
weight is drawn from one CPU ``torch.Generator`` seeded from ``seed``, whose state the checkpoint stores (with the
global RNG states). Evaluation and pictures use their own fixed generators, so looking at a run never changes it.
Under DDP every rank draws the same global batch and keeps its slice (rank r takes rows r*B/N to (r+1)*B/N), so N
processes see the batches one process would.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from . import ddp
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .plots import component_series, read_metrics, save_image_grid, save_loss_curves, save_scatter
from .recipes import get_recipe
from .recipes._common import unwrap

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
SAMPLES_DIR = "samples"
LATEST_SAMPLES = "samples.png"

_EVAL_SEED_OFFSET = 1_000_003  # the evaluation/picture generators' seeds: distinct from the training stream


class TrainingError(RuntimeError):
    """A problem with a run (bad state, non-finite losses) reported to the user in one line."""


# --- models --------------------------------------------------------------------------------------------------

def build_models(config: dict, fuse: bool = False) -> tuple[nn.Module, nn.Module]:
    """The generator and critic a config describes (on the CPU, freshly initialised from the global RNG).

    Each network is built from fastgan.models (PyTorch's default initialisation) and spectrally normalised when
    the recipe asks for it (critics). With ``fuse``,
    fastgan.nn.fuse_activations turns its Linear/Conv2d + activation pairs into fastgan's fused blocks; parameter
    names do not change, so checkpoints load into fused and plain models alike.
    """
    from ..models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
    from ..nn import fuse_activations
    from ..nn.utils import spectral_norm_all

    m = config["model"]
    recipe = get_recipe(config["recipe"])
    g_width = m.get("g_width") or m["width"]

    def finish(net, critic):
        if critic and m.get("spectral_norm"):
            net = spectral_norm_all(net)
        if fuse:
            net = fuse_activations(net, inplace=True)
        return net

    if m["arch"] == "mlp":
        def make_g():
            return finish(MLPGenerator(z_dim=m["z_dim"], hidden=g_width, depth=m["depth"], out_dim=m["dim"]),
                          False)

        def make_d():
            return finish(MLPCritic(in_dim=m["dim"], hidden=m["width"], depth=m["depth"]), True)
    else:
        def make_g():
            return finish(DCGANGenerator(z_dim=m["z_dim"], image_size=m["image_size"], channels=m["channels"],
                                         width=g_width, depth=m.get("depth")), False)

        def make_d():
            return finish(DCGANCritic(image_size=m["image_size"], channels=m["channels"], width=m["width"],
                                      batch_norm=bool(m.get("critic_batch_norm", False)), depth=m.get("depth")),
                          True)
    return recipe.build_models(make_g, make_d, config)


# --- data -----------------------------------------------------------------------------------------------------

class BatchStream:
    """Random batches of a Dataset from a seeded generator: fresh samples for the built-in 2D sets (as gan_toy.py
    draws them), uniform draws with replacement from the data otherwise. Stateless apart from the generator, so a
    checkpoint of the generator's state is a checkpoint of the stream."""

    def __init__(self, dataset, batch_size: int, generator: torch.Generator, device: torch.device,
                 info: ddp.DistInfo):
        self.dataset, self.batch_size, self.generator, self.device = dataset, batch_size, generator, device
        per_rank = batch_size // info.world_size
        self.rows = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
        self.per_rank = per_rank
        self._non_blocking = device.type == "cuda"

    def _shard(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.rows].to(self.device, non_blocking=self._non_blocking)

    def real(self) -> torch.Tensor:
        return self._shard(self.dataset.sample(self.batch_size, self.generator))

    def normal(self, *shape: int) -> torch.Tensor:
        return self._shard(torch.randn(self.batch_size, *shape, generator=self.generator))

    def uniform(self) -> torch.Tensor:
        return self._shard(torch.rand(self.batch_size, generator=self.generator))


# --- what a recipe sees ---------------------------------------------------------------------------------------

class Run:
    """The state a recipe's ``setup`` and ``train_step`` work on.

    Attributes: ``G``, ``D`` (DistributedDataParallel-wrapped when running on several processes), ``hp`` (the
    hyper-parameters as attributes), ``config``, ``device``, ``step`` (0-based index of the generator step being
    run), ``reg_every``; the recipe's ``setup`` adds its optimizers as ``opt_*`` attributes.

    Methods, with the plain PyTorch each stands for:
    ``real()`` a batch of real samples on the device; ``z()`` a batch of latents ``torch.randn(B, z_dim)``;
    ``uniform()`` ``torch.rand(B)`` (the penalty's mixing weights); ``autocast()``
    ``torch.autocast(device_type, dtype, enabled=amp != "none")``; ``update(opt, loss)``
    ``opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()`` with the optimizer's own
    GradScaler (a no-op unless --amp fp16; for ``DDP_WRAP = False`` recipes under several processes the gradients
    are averaged over the processes before the step); ``penalty_options(opt)`` the ``method=`` and
    ``scaler=`` arguments for fastgan's penalties.
    """

    def __init__(self, G, D, config, device, stream: BatchStream, info: ddp.DistInfo):
        self.G, self.D = G, D
        self.config = config
        self.hp = SimpleNamespace(**config["hp"])
        self.device = device
        self.step = 0
        self.info = info
        self.reg_every = int(config.get("reg_every", 1))
        self._stream = stream
        self._z_dim = int(config["model"]["z_dim"])
        amp = config.get("amp", "none")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self._scalers: dict[int, torch.amp.GradScaler] = {}
        self.sync_gradients = False  # set by the trainer for recipes it does not wrap in DDP

    # data
    def real(self) -> torch.Tensor:
        return self._stream.real()

    def z(self) -> torch.Tensor:
        return self._stream.normal(self._z_dim)

    def uniform(self) -> torch.Tensor:
        return self._stream.uniform()

    @property
    def batch_size(self) -> int:
        """This process's batch size (the global one divided by the number of processes)."""
        return self._stream.per_rank

    # precision
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self, opt) -> torch.amp.GradScaler:
        key = id(opt)
        if key not in self._scalers:
            self._scalers[key] = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        return self._scalers[key]

    def update(self, opt, loss: torch.Tensor) -> None:
        scaler = self.scaler(opt)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if self.sync_gradients:
            _all_reduce_mean(opt)
        scaler.step(opt)
        scaler.update()

    # penalties
    def penalty_options(self, opt) -> dict:
        """``method=`` (--gp-method) and ``scaler=`` (the optimizer's GradScaler with --amp fp16, else None) for
        fastgan's penalties and fastgan.distributed.critic_outputs."""
        scaler = self.scaler(opt) if self.amp_dtype == torch.float16 else None
        return {"method": self.config.get("gp_method", "double_backward"), "scaler": scaler}

    def optimizers(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.startswith("opt_") and isinstance(v, torch.optim.Optimizer)}


def _all_reduce_mean(opt) -> None:
    """Average the gradients of ``opt``'s parameters over the processes (what DDP does, without its overlap)."""
    import torch.distributed as dist

    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


# --- evaluation and pictures ----------------------------------------------------------------------------------

@torch.no_grad()
def generate(G: nn.Module, config: dict, n: int, generator: torch.Generator, device: torch.device,
             batch: int = 2500) -> torch.Tensor:
    """``n`` samples of the generator in eval mode, on the CPU (float32)."""
    G = unwrap(G)
    recipe = get_recipe(config["recipe"])
    was_training = G.training
    G.eval()
    try:
        out = []
        z_dim = int(config["model"]["z_dim"])
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), z_dim, generator=generator).to(device)
            out.append(recipe.generate(G, z).float().cpu())
        return torch.cat(out)
    finally:
        G.train(was_training)


def evaluate(G: nn.Module, config: dict, dataset, device: torch.device, n: int | None = None,
             seed: int | None = None) -> dict:
    """The data's metrics on ``n`` samples (default ``config["eval_samples"]``): mode coverage and high-quality
    fraction for ring8/grid25, class coverage, class-histogram KL and Frechet distance for digits, nothing for
    data without a reference metric. Deterministic for a given ``seed`` (default: derived from the run's)."""
    n = int(config.get("eval_samples", 10_000)) if n is None else n
    seed = config["seed"] + _EVAL_SEED_OFFSET if seed is None else seed
    if dataset.kind == "2d" and dataset.centres is not None:
        from ..metrics import mode_metrics

        samples = generate(G, config, n, torch.Generator().manual_seed(seed), device)
        return mode_metrics(samples, dataset.centres, dataset.sigma)
    if dataset.labels is not None and dataset.kind == "image" and dataset.shape[0] == 1:
        from ..metrics import digits_metrics

        samples = generate(G, config, n, torch.Generator().manual_seed(seed), device)
        return digits_metrics(samples)
    return {}


def save_samples_picture(G, config, dataset, device, path: Path, title: str | None = None) -> Path:
    """A scatter of 2,000 generated points over 2,000 real ones (2D), or a grid of 64 generated images; for a
    recipe with ``sample_groups`` (MIX+GAN), points coloured by component and one row of images per component."""
    g = torch.Generator().manual_seed(config["seed"] + _EVAL_SEED_OFFSET + 1)
    grouped = get_recipe(config["recipe"]).sample_groups
    n = 2000 if dataset.kind == "2d" else 64
    samples = generate(G, config, n, g, device, batch=n)  # one call, so sample_groups describes its rows
    groups, labels = grouped(unwrap(G), n) if grouped is not None else (None, None)
    if dataset.kind == "2d":
        real = dataset.sample(n, torch.Generator().manual_seed(config["seed"] + _EVAL_SEED_OFFSET + 2))
        return save_scatter(samples, real, path, title=title, groups=groups, group_labels=labels)
    if groups is None:
        return save_image_grid(samples, path, nrow=8)
    # Component i's samples in row i, up to 8 each, blank cells where a component drew fewer.
    rows = []
    for index in range(int(groups.max()) + 1):
        mine = samples[groups == index][:8]
        rows += [mine, torch.ones(8 - len(mine), *samples.shape[1:])]  # blank: white in [-1, 1]
    return save_image_grid(torch.cat(rows), path, nrow=8)


# --- the trainer ----------------------------------------------------------------------------------------------

class Trainer:
    """Runs a config's recipe in ``run_dir`` (None: write nothing), from scratch or from ``resume_state``."""

    def __init__(self, config: dict, run_dir: Path | None, device: torch.device, dataset,
                 info: ddp.DistInfo | None = None, resume_state: dict | None = None, progress: bool = True,
                 fuse: bool | None = None):
        self.config = config
        self.info = info or ddp.DistInfo()
        self.main = self.info.is_main
        self.run_dir = Path(run_dir) if run_dir is not None and self.main else None
        self.device = device
        self.dataset = dataset
        self.progress = progress
        self.recipe = get_recipe(config["recipe"])
        if config["batch_size"] % self.info.world_size:
            raise ValueError(f"--batch-size {config['batch_size']} must be divisible by the number of processes "
                             f"({self.info.world_size})")

        # fused Linear/Conv + activation blocks: on CUDA by default; on CPU they measured slower than PyTorch's
        # addmm + activation for these small models (docs/results.md), so the plain layers train there
        self.fused = device.type == "cuda" if fuse is None else bool(fuse)
        torch.manual_seed(config["seed"])
        G, D = build_models(config, fuse=self.fused)
        self.G_module, self.D_module = G.to(device), D.to(device)
        self.generator = torch.Generator().manual_seed(config["seed"] ^ 0x5DEECE66D)
        self.stream = BatchStream(dataset, config["batch_size"], self.generator, device, self.info)
        wrap = self.recipe.DDP_WRAP
        self.run = Run(ddp.wrap(G, device, self.info) if wrap else G, ddp.wrap(D, device, self.info) if wrap else D,
                       config, device, self.stream, self.info)
        self.run.sync_gradients = self.info.enabled and not wrap
        self.recipe.setup(self.run)
        self.optimizers = self.run.optimizers()
        if not self.optimizers:
            raise TypeError(f"recipe {config['recipe']}: setup() created no opt_* optimizer")
        self.base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.optimizers.items()}
        for opt in self.optimizers.values():
            self.run.scaler(opt)
        self.start_step = 0
        self.elapsed = 0.0
        if resume_state is not None:
            self.load_state(resume_state)

    # state
    def state(self, step: int) -> dict:
        return {
            "step": step,
            "config": self.config,
            "G": self.G_module.state_dict(),
            "D": self.D_module.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: self.run.scaler(o).state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "rng": capture_rng_state(),
            "elapsed_s": float(self.elapsed),
        }

    def load_state(self, state: dict) -> None:
        try:
            self.G_module.load_state_dict(state["G"])
            self.D_module.load_state_dict(state["D"])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
                if state.get("scalers", {}).get(k):
                    self.run.scaler(o).load_state_dict(state["scalers"][k])
            self.generator.set_state(state["generator"])
            restore_rng_state(state["rng"])
            self.start_step = int(state["step"])
            self.elapsed = float(state.get("elapsed_s", 0.0))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise TrainingError(f"the checkpoint does not match this run's models or optimizers ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from e

    def _set_lr(self, step: int) -> None:
        if self.config["hp"].get("lr_decay", "none") != "linear":
            return
        factor = max(0.0, 1.0 - step / max(1, self.config["steps"]))
        for k, o in self.optimizers.items():
            for g, base in zip(o.param_groups, self.base_lrs[k]):
                g["lr"] = base * factor

    # files
    def _write_metrics(self, record: dict) -> None:
        if self.run_dir is None:
            return
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop records written after the checkpoint a resumed run continues from."""
        if self.run_dir is None or not (self.run_dir / METRICS).exists():
            return
        keep = [r for r in read_metrics(self.run_dir / METRICS) if r.get("step", 0) <= step]
        tmp = self.run_dir / (METRICS + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)
        os.replace(tmp, self.run_dir / METRICS)

    def _pictures(self, step: int) -> None:
        if self.run_dir is None:
            return
        title = f"{self.config['recipe']} on {self.config['data']}, step {step}"
        path = save_samples_picture(self.G_module, self.config, self.dataset, self.device,
                                    self.run_dir / SAMPLES_DIR / f"step_{step:07d}.png", title)
        with open(path, "rb") as src:
            data = src.read()
        tmp = self.run_dir / (LATEST_SAMPLES + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.run_dir / LATEST_SAMPLES)
        self._curves()

    def _curves(self) -> None:
        path = self.run_dir / METRICS
        if not path.exists():
            return
        records = []
        for r in read_metrics(path):
            r = {k: v for k, v in r.items() if k not in ("elapsed_s", "it_s")}
            if isinstance(r.get("eval"), dict):
                r["eval"] = {k: v for k, v in r["eval"].items() if k != "n_modes"}
            records.append(r)
        try:
            save_loss_curves(records, self.run_dir / CURVES)
        except ValueError:
            pass  # nothing numeric yet

    def _checkpoint(self, step: int) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / CHECKPOINT, self.state(step))

    # the loop
    def fit(self) -> dict:
        cfg = self.config
        steps = cfg["steps"]
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, cfg)
            self._truncate_metrics(self.start_step)
        bar = None
        if self.main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=self.start_step, desc=f"{cfg['recipe']} {cfg['data']}", unit="step",
                       dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        last = {}
        evaluation = {}
        t0 = time.perf_counter() - self.elapsed
        t_log, step_log = time.perf_counter(), self.start_step
        self.G_module.train()
        self.D_module.train()
        try:
            for step in range(self.start_step, steps):
                self.run.step = step
                self._set_lr(step)
                logs = self.recipe.train_step(self.run)
                for k, v in logs.items():
                    v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                    sums[k] = sums[k] + v if k in sums else v.clone()
                    counts[k] = counts.get(k, 0) + 1
                done = step + 1
                is_last = done == steps
                if done % cfg["log_every"] == 0 or is_last:
                    now = time.perf_counter()
                    means = {k: float(v) / counts[k] for k, v in sums.items()}
                    if not all(math.isfinite(v) for v in means.values()):
                        bad = ", ".join(k for k, v in means.items() if not math.isfinite(v))
                        raise TrainingError(f"non-finite {bad} at step {done}: the run diverged (try a lower --lr "
                                            f"or --amp none)")
                    self.elapsed = now - t0
                    rate = (done - step_log) / max(now - t_log, 1e-9)
                    last = means
                    self._write_metrics({"step": done, **{k: round(v, 6) for k, v in means.items()},
                                         "it_s": round(rate, 3), "elapsed_s": round(self.elapsed, 3)})
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if not component_series(k)},
                                        refresh=False)  # per-component series (mixture weights) only in the files
                    sums, counts = {}, {}
                    t_log, step_log = now, done
                if self.main and (done % cfg["eval_every"] == 0 or is_last):
                    evaluation = evaluate(self.G_module, cfg, self.dataset, self.device)
                    if evaluation:
                        self._write_metrics({"step": done, "eval": evaluation})
                if self.main and (done % cfg["sample_every"] == 0 or is_last):
                    self._pictures(done)
                if done % cfg["checkpoint_every"] == 0 or is_last:
                    self.elapsed = time.perf_counter() - t0
                    self._checkpoint(done)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        if self.start_step >= steps and self.main and self.run_dir is not None:
            # nothing to train (--steps 0, or a finished run resumed): still leave a usable run folder
            evaluation = evaluate(self.G_module, cfg, self.dataset, self.device)
            if not (self.run_dir / CHECKPOINT).exists():
                self._checkpoint(self.start_step)
                self._pictures(self.start_step)
        self.elapsed = time.perf_counter() - t0
        return {"step": max(steps, self.start_step), "losses": last, "eval": evaluation,
                "elapsed_s": self.elapsed}


def write_config(run_dir: Path, config: dict) -> None:
    tmp = run_dir / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / CONFIG)


def load_run(run_dir: Path, map_location="cpu") -> dict:
    """The latest checkpoint of ``run_dir`` (a run folder or a checkpoint file). Raises FileNotFoundError or
    ValueError with a one-line message."""
    run_dir = Path(run_dir)
    path = run_dir if run_dir.is_file() else run_dir / CHECKPOINT
    if not run_dir.exists():
        raise FileNotFoundError(f"{str(run_dir)!r} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} holds no checkpoint ({CHECKPOINT}): not a fastgan run folder, "
                                f"or its first checkpoint was never written")
    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state.get("config"), dict) or "step" not in state or "G" not in state:
        raise ValueError(f"checkpoint {str(path)!r} is not a fastgan training checkpoint")
    return state
