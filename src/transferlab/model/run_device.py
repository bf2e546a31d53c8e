"""The device this process trains on, for the passes a run makes outside Lightning's loops.

The feature cache is filled before the Trainer exists; AdaBN's re-estimation, LoRA's merged check and the shift
diagnostics run after `fit`/`test`, when Lightning has moved the model back to the CPU; the CycleGAN translation
ran on the CPU by design. Without this all of them ran on the CPU under `hardware=gpu`: a feature-extraction
study on a GPU box spent its time in CPU convolutions, and its cached features came from other kernels than the
uncached run's. `run_device(cfg.hardware)` follows Lightning's device assignment instead: one CUDA device per process
(`hardware.devices` as a count, `-1`/`auto`, or device ids; the process's local rank picks its entry), MPS,
else the CPU (also for TPUs: their XLA tensors are not filled here).
"""

from __future__ import annotations

import contextlib
import os

import torch


def gpu_ids(devices, count: int) -> list[int]:
    """The CUDA device indices `hardware.devices` selects, as Lightning's `Trainer(devices=...)` reads it:
    an int N > 0 (the first N), -1 / "-1" / "auto" (all `count`), a list or a string of ids ("0,2", "1,")."""
    if devices is None or devices == "auto" or devices == -1 or (isinstance(devices, str) and devices.strip() == "-1"):
        return list(range(count))
    if isinstance(devices, str):
        devices = [int(x) for x in devices.split(",") if x.strip()] if "," in devices else int(devices.strip())
    if isinstance(devices, int):
        return list(range(devices))
    return [int(d) for d in devices]


def local_rank() -> int:
    """This process's rank on its node, from the variables Lightning's cluster environments read: LOCAL_RANK (its
    own DDP launcher, torchelastic), SLURM's task id, LSF's (jsrun) and Open MPI's local ranks."""
    for var in ("LOCAL_RANK", "SLURM_LOCALID", "JSM_NAMESPACE_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"):
        value = os.environ.get(var, "")
        if value.strip().isdigit():
            return int(value)
    return 0


def forks(strategy) -> bool:
    """Whether Lightning starts the run's processes by forking this one (`ddp_fork`, `ddp_notebook`, or a strategy
    node with `start_method: fork`): a CUDA context created before that makes Lightning refuse to fork."""
    if isinstance(strategy, str):
        return strategy.startswith(("ddp_fork", "ddp_notebook"))
    return hasattr(strategy, "get") and str(strategy.get("start_method", "")) == "fork"


def run_device(hardware, rank: int | None = None, cuda_count: int | None = None) -> torch.device:
    """The device this process trains on under `hardware` (the config group).

    Args:
        hardware: `cfg.hardware` (`accelerator`, `devices`).
        rank: the process's local rank (default: `local_rank()`).
        cuda_count: visible CUDA devices (default: `torch.cuda.device_count()`).
    """
    accelerator = str(hardware.get("accelerator", "auto")).lower()
    if accelerator not in ("gpu", "cuda", "auto", "mps") or forks(hardware.get("strategy")):
        return torch.device("cpu")  # a CPU run; or CUDA must stay uninitialised until Lightning forks its workers
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    if accelerator != "mps" and count > 0:
        ids = gpu_ids(hardware.get("devices", "auto"), count) or [0]
        rank = local_rank() if rank is None else rank
        index = ids[rank] if rank < len(ids) else ids[0]
        # torchelastic / srun may show each process only its own device: index 0 of what it sees
        return torch.device("cuda", index if index < count else rank % count)
    mps = getattr(torch.backends, "mps", None)
    if accelerator in ("mps", "gpu", "auto") and mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def placed(module: torch.nn.Module, device: torch.device):
    """`module` on `device` inside the block, back on the device of its first parameter afterwards (the
    Trainer moves the whole model when it starts)."""
    home = next(iter(module.parameters()), torch.empty(0)).device
    if torch.device(device) == home:
        yield module
        return
    try:
        module.to(device)
        yield module
    finally:
        module.to(home)
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()  # the frozen part's activations: the training run wants the memory


def kernels_key(device: torch.device) -> str:
    """What the feature cache's key adds for features computed on `device` ("" on the CPU, as before): the device
    type and, on CUDA, the GPU model and whether TF32 rounds float32 convolutions and matmuls (other kernels,
    other rounding: a cached entry is served only to runs that would compute the same values)."""
    if device.type == "cpu":
        return ""
    if device.type != "cuda":
        return f"|{device.type}"
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    return f"|cuda|{torch.cuda.get_device_name(device)}|tf32={int(tf32[0])}{int(tf32[1])}"
