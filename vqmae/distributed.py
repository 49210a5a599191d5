"""Processes and devices: accelerate's Accelerator/PartialState set up for CPU and GPU data
parallelism, and a clean process-group teardown at exit."""

from __future__ import annotations

import atexit
import os
import random
from typing import Any

import numpy as np
import torch


def release_process_group() -> None:
    """Destroy the default ``torch.distributed`` process group, if there is one (idempotent).

    A process that exits with a live gloo group, or with a DDP model still alive when the group
    is destroyed, can abort (SIGABRT, "terminate called without an active exception"): gloo's
    worker threads are torn down after the interpreter. Drop DDP-wrapped models before calling
    this. Registered with :mod:`atexit` by :func:`make_accelerator`, the tokenize job and
    :func:`init_distributed_if_launched`, so it runs while the interpreter is still alive, on
    every exit path.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()  # DDP wrappers left in reference cycles hold gloo work: free them first
        dist.destroy_process_group()


def init_distributed_if_launched(**state_kwargs: Any):
    """Join the process group when started by ``accelerate launch`` / ``torchrun`` (WORLD_SIZE > 1),
    for stages that need the ranks before their first :func:`fit`. Returns accelerate's
    ``PartialState`` (``state_kwargs``: e.g. ``cpu``, ``timeout``; default ``cpu`` = no CUDA),
    or None in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state_kwargs.setdefault("cpu", not torch.cuda.is_available())
    state = PartialState(**state_kwargs)
    register_process_group_release()
    return state


def _state():
    """accelerate's PartialState (joins the process group when launched with several ranks)."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1:
        register_process_group_release()
    return state


def is_main_process() -> bool:
    """True on rank 0 of a process group, and in a single process (accelerate's PartialState)."""
    return _state().is_main_process


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    _state().wait_for_everyone()


def register_process_group_release() -> None:
    """Make sure :func:`release_process_group` runs at interpreter exit (registered once)."""
    global _release_registered
    if not _release_registered:
        atexit.register(release_process_group)
        _release_registered = True


_release_registered = False


def make_accelerator(mixed_precision: str = "auto", grad_accum: int = 1,
                     find_unused_parameters: bool = False, **kwargs: Any):
    """An Accelerator that runs real data parallelism on CPU as well as on GPUs.

    ``auto`` picks bf16 on a GPU that supports it, else fp32. On CPU, ``accelerate launch
    --multi_gpu --num_processes N`` (or torchrun) gives N gloo ranks. The process group is
    destroyed at interpreter exit (:func:`release_process_group`).
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    register_process_group_release()

    cuda = torch.cuda.is_available()
    if mixed_precision == "auto":
        mixed_precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if not cuda and mixed_precision != "no":
        mixed_precision = "no"
    handlers = kwargs.pop("kwargs_handlers", None) or [
        DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    ]
    return Accelerator(
        cpu=not cuda,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        kwargs_handlers=handlers,
        **kwargs,
    )


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic``, also use torch's deterministic
    kernels (``torch.use_deterministic_algorithms``, warning where an op has none). Without them,
    multi-threaded CPU kernels sum in a varying order: the demo's pretraining losses differed in
    the 8th digit after 10 steps and its masked-token accuracy in the 3rd after 960."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
        torch.use_deterministic_algorithms(True, warn_only=True)


