"""Process-group set-up for ``torchrun --nproc-per-node N -m fastgan train ...``.

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with WORLD_SIZE > 1 the trainer joins
the group (NCCL when training on CUDA, gloo on CPU), wraps the generator and the critic in
DistributedDataParallel, gives every rank its slice of each global batch, and lets rank 0 alone write files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def resolve_device(requested: str, world: int, local_rank: int) -> torch.device:
    """``auto`` -> CUDA when available else CPU; under torchrun each rank takes ``cuda:LOCAL_RANK``.

    Raises ValueError for CUDA requested on a machine without it, or an unparsable device."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ValueError(f"--device {requested!r} is not a device (use auto, cpu, cuda or cuda:N)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is "
                             "False); use --device cpu")
        if world > 1 and device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ValueError(f"--device {requested!r}: fastgan trains on cpu or cuda")
    return device


def init(device: torch.device) -> DistInfo:
    """Join torchrun's process group when WORLD_SIZE > 1 (idempotent); a single process otherwise."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        kwargs = {"backend": backend, "timeout": datetime.timedelta(minutes=10)}
        if device.type == "cuda":
            kwargs["device_id"] = device  # binds NCCL to this rank's GPU
        dist.init_process_group(**kwargs)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    backend=backend)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, info: DistInfo):
    """``obj`` from rank 0 on every rank (a small picklable object: the run directory, an error message)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(module: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when running on several processes (it broadcasts rank 0's
    parameters and buffers at construction, so every rank starts from the same models; buffers such as batch-norm
    statistics and spectral-norm vectors are broadcast from rank 0 at every forward)."""
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=True)
