"""The training loop shared by every stage (tokenizers, MAE pretraining, fine-tuning).

What it guarantees (tested in tests/test_training.py):

* **Data parallel everywhere**: :func:`make_accelerator` builds ``Accelerator(cpu=not cuda)``, so
  ``accelerate launch --multi_gpu --num_processes 2`` really runs two ranks on CPU too.
  Global batch ``k`` of an epoch is the same set of samples whatever the number of processes:
  rank ``r`` of ``W`` takes its slice of it. So 2 ranks × batch b ≡ 1 rank × batch 2b.
* **Exact resume**: sampling depends only on ``(seed, epoch)``; every micro-step reseeds torch
  from ``(seed, step, rank)``; checkpoints (accelerate ``save_state`` + ``trainer_state.json``)
  are written atomically at optimizer-step boundaries. A resumed run equals an uninterrupted
  one on CPU.
* LR = ``lr`` or ``base_lr × effective batch / 256`` (printed), linear warm-up then cosine,
  set per optimizer step; gradient accumulation; clipping; bf16 autocast on GPU (``auto``).
* A non-finite loss stops the run with a message; the last good checkpoint is kept.
* Model selection: ``eval_fn`` after each epoch; the best epoch by ``select_metric`` is saved
  to ``RUN/best/`` and restored at the end when ``restore_best``.

Datasets with random items (crops, noise) should derive their randomness from
``(seed, epoch, index)``; ``fit`` calls ``dataset.set_epoch(epoch)`` when it exists.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from vqmae.io import read_json, write_json
from vqmae.runs import Run


class NonFiniteLossError(RuntimeError):
    """Raised when the loss is NaN/inf; the run's last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Loop settings shared by every training stage (embedded as ``train`` in stage configs)."""

    epochs: int = 10
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = run all epochs)."""
    batch_size: int = 16
    """Per-process batch size; effective batch = batch_size × processes × grad_accum."""
    grad_accum: int = 1
    lr: float = 0.0
    """Absolute learning rate; 0 means base_lr × effective batch / 256."""
    base_lr: float = 1e-3
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    optimizer: Literal["adamw", "adam"] = "adamw"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    """If > 0, overrides warmup_epochs."""
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = 0.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """auto: bf16 on GPU, fp32 on CPU."""
    find_unused_parameters: bool = False
    """Data parallel only: allow steps in which some parameters get no gradient (a modality left
    out of a batch, a head's stand-in for an absent modality). Costs a graph walk per step."""
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    """Save resumable state every N optimizer steps (0 = at the end of every epoch)."""
    keep_checkpoints: int = 2
    eval_every: int = 1
    """Run eval_fn every N epochs."""
    select_metric: str = ""
    """Metric of eval_fn that picks the best epoch ('' = keep the last)."""
    select_mode: Literal["max", "min"] = "max"
    restore_best: bool = True
    tensorboard: bool = True
    progress: bool = True


@dataclass
class StepInfo:
    """Passed to ``loss_fn`` with each micro-batch."""

    step: int
    """Optimizer steps done before this micro-batch."""
    epoch: int
    micro_step: int
    generator: torch.Generator
    """Seeded from (seed, micro_step, rank): use it for masking and other randomness."""
    device: torch.device


@dataclass
class FitResult:
    model: nn.Module
    steps: int
    epochs_done: int
    best_epoch: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


# ------------------------------------------------------------------------- infrastructure


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


def is_main_process() -> bool:
    """True on rank 0 of a process group, and in a single process."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _step_seed(seed: int, micro_step: int, rank: int) -> int:
    return (seed * 1_000_003 + micro_step * 9_176 + rank * 7_919 + 17) % (2**63 - 1)


def learning_rate(cfg: TrainConfig, effective_batch: int) -> float:
    """The peak LR: ``lr`` if set, else ``base_lr × effective_batch / 256`` (MAE rule)."""
    return cfg.lr if cfg.lr > 0 else cfg.base_lr * effective_batch / 256


def lr_at(step: int, peak: float, warmup: int, total: int, schedule: str = "cosine",
          min_lr: float = 0.0) -> float:
    """LR for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases, norms, embeddings' 1-D params and
    ``model.no_weight_decay()`` names are excluded (as in MAE/timm)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's micro-batches of one epoch, a pure function of (seed, epoch).

    Global batch ``k`` is ``perm[k*B:(k+1)*B]`` with ``B = batch_size × world``; rank ``r`` takes
    ``[r*batch_size:(r+1)*batch_size]`` of it. Incomplete global batches are dropped.
    ``skip`` leaves out the first micro-batches (for resuming mid-epoch).
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                 world: int = 1, shuffle: bool = True, skip: int = 0):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world, self.shuffle, self.skip = rank, world, shuffle, skip

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        gb = self.batch_size * self.world
        for k in range(self.skip, self.batches_per_epoch()):
            start = k * gb + self.rank * self.batch_size
            yield perm[start:start + self.batch_size]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# ---------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    ckpt = Path(run_dir) / "checkpoints"
    if not ckpt.is_dir():
        return []
    done = [p for p in ckpt.iterdir() if p.is_dir() and p.name.startswith("step_")
            and (p / "trainer_state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def _save_checkpoint(accelerator, run: Run, state: dict[str, Any], keep: int) -> None:
    step = state["step"]
    final = run.checkpoint_dir / f"step_{step:08d}"
    tmp = run.checkpoint_dir / f".tmp_step_{step:08d}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run.dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------- loop


LossFn = Callable[[nn.Module, Any, StepInfo], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module, int], "dict[str, float]"]


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    cfg: TrainConfig,
    run: Run,
    *,
    accelerator=None,
    collate_fn: Callable | None = None,
    eval_fn: EvalFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``dataset`` with ``loss_fn(model, batch, info) -> (loss, metrics)``.

    ``loss`` must be a mean over the micro-batch (so data-parallel averaging is exact).
    ``eval_fn(unwrapped_model, epoch) -> metrics`` runs on every rank after each epoch
    (``eval_every``). With ``resume``, training continues from the newest checkpoint in
    ``run.dir/checkpoints``. Returns the unwrapped model (best epoch restored if selected).
    """
    acc = accelerator or make_accelerator(cfg.mixed_precision, cfg.grad_accum, cfg.find_unused_parameters)
    world, rank = acc.num_processes, acc.process_index
    n = len(dataset)  # type: ignore[arg-type]
    micro_per_epoch = n // (cfg.batch_size * world)
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"dataset of {n} items is too small for batch_size {cfg.batch_size} × {world} "
            f"processes × grad_accum {cfg.grad_accum}: lower batch_size"
        )
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    effective_batch = cfg.batch_size * world * cfg.grad_accum
    peak_lr = learning_rate(cfg, effective_batch)
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else round(cfg.warmup_epochs * steps_per_epoch)
    run.info(
        "training: %d samples, %d process(es), effective batch %d (= %d × %d × accum %d), "
        "lr %.3g (%s), %d steps (%d per epoch), warm-up %d, precision %s",
        n, world, effective_batch, cfg.batch_size, world, cfg.grad_accum, peak_lr,
        "set" if cfg.lr > 0 else f"base_lr {cfg.base_lr:g} × {effective_batch}/256",
        total_steps, steps_per_epoch, warmup, acc.mixed_precision,
    )

    seed_everything(cfg.seed)
    opt = optimizer or make_optimizer(model, cfg, peak_lr)
    model, opt = acc.prepare(model, opt)
    unwrapped = acc.unwrap_model(model)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "micro_in_epoch": 0, "best_metric": None,
                             "best_epoch": None, "best_metrics": {}, "history": []}
    if resume:
        ckpts = list_checkpoints(run.dir)
        if ckpts:
            acc.load_state(str(ckpts[-1]))
            state = read_json(ckpts[-1] / "trainer_state.json")
            run.info("resumed from %s (step %d, epoch %d)", ckpts[-1], state["step"], state["epoch"])
        else:
            run.info("--resume: no checkpoint in %s, starting from scratch", run.checkpoint_dir)

    best_dir = run.dir / "best"
    stopped_early = False
    progress = None
    if cfg.progress and acc.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step",
                        dynamic_ncols=True, leave=False)

    def checkpoint() -> None:
        _save_checkpoint(acc, run, state, cfg.keep_checkpoints)

    running: dict[str, float] = {}
    running_n = 0
    try:
        while state["step"] < total_steps and state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            # whole optimizer steps only: the trailing micro-batches that do not fill one are dropped
            sampler = EpochBatchSampler(n, cfg.batch_size, cfg.seed, epoch, rank, world,
                                        shuffle=True, skip=state["micro_in_epoch"])
            sampler_end = steps_per_epoch * cfg.grad_accum
            loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                num_workers=cfg.num_workers,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch),
                                persistent_workers=False)
            model.train()
            micro_in_epoch = state["micro_in_epoch"]
            for batch in loader:
                if micro_in_epoch >= sampler_end or state["step"] >= total_steps:
                    break
                micro_step = epoch * sampler_end + micro_in_epoch
                torch.manual_seed(_step_seed(cfg.seed, micro_step, rank))
                gen = torch.Generator(device="cpu").manual_seed(_step_seed(cfg.seed + 1, micro_step, rank))
                info = StepInfo(state["step"], epoch, micro_step, gen, acc.device)
                batch = _to_device(batch, acc.device)
                with acc.accumulate(model):
                    with acc.autocast():
                        loss, metrics = loss_fn(model, batch, info)
                    finite = torch.tensor([1.0 if torch.isfinite(loss.detach()).all() else 0.0],
                                          device=acc.device)
                    if world > 1:
                        finite = acc.reduce(finite, reduction="sum") / world
                    if finite.item() < 1.0:
                        raise NonFiniteLossError(
                            f"non-finite loss at step {state['step']} (epoch {epoch}): "
                            f"{loss.item() if loss.numel() == 1 else loss}; stopping. "
                            f"The last good checkpoint stays in {run.checkpoint_dir}. "
                            "Try a lower lr, grad_clip, or mixed_precision=no."
                        )
                    acc.backward(loss)
                    if acc.sync_gradients:
                        lr = lr_at(state["step"], peak_lr, warmup, total_steps, cfg.schedule, cfg.min_lr)
                        for group in opt.param_groups:
                            group["lr"] = lr
                        if cfg.grad_clip > 0:
                            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                micro_in_epoch += 1
                state["micro_in_epoch"] = micro_in_epoch
                running["loss"] = running.get("loss", 0.0) + float(loss.detach())
                for k, v in metrics.items():
                    running[k] = running.get(k, 0.0) + float(v)
                running_n += 1
                if micro_in_epoch % cfg.grad_accum == 0:
                    state["step"] += 1
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{float(loss.detach()):.4f}")
                    if state["step"] % cfg.log_every == 0 or state["step"] == total_steps:
                        row = {"step": state["step"], "epoch": epoch, "split": "train",
                               "lr": opt.param_groups[0]["lr"]}
                        row.update({k: v / running_n for k, v in running.items()})
                        run.log_metrics(row)
                        running, running_n = {}, 0
                    if cfg.checkpoint_every > 0 and state["step"] % cfg.checkpoint_every == 0 \
                            and micro_in_epoch < sampler_end and state["step"] < total_steps:
                        checkpoint()
            # ---- end of epoch (or of max_steps)
            epoch_complete = micro_in_epoch >= sampler_end
            if epoch_complete:
                state["epoch"] = epoch + 1
                state["micro_in_epoch"] = 0
            if running_n:
                row = {"step": state["step"], "epoch": epoch, "split": "train", "lr": opt.param_groups[0]["lr"]}
                row.update({k: v / running_n for k, v in running.items()})
                run.log_metrics(row)
                running, running_n = {}, 0
            if eval_fn is not None and epoch_complete and (epoch + 1) % cfg.eval_every == 0:
                model.eval()
                with torch.no_grad():
                    metrics = eval_fn(unwrapped, epoch)
                model.train()
                row = {"step": state["step"], "epoch": epoch, "split": "val", **metrics}
                run.log_metrics(row)
                state["history"].append(row)
                run.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                                                           if isinstance(v, (int, float))))
                if cfg.select_metric:
                    if cfg.select_metric not in metrics:
                        raise KeyError(f"select_metric '{cfg.select_metric}' not among eval metrics {list(metrics)}")
                    value = float(metrics[cfg.select_metric])
                    best = state["best_metric"]
                    better = best is None or (value > best if cfg.select_mode == "max" else value < best)
                    if better:
                        state["best_metric"], state["best_epoch"] = value, epoch
                        state["best_metrics"] = dict(metrics)
                        if acc.is_main_process:
                            _save_best(unwrapped, best_dir)
                        acc.wait_for_everyone()
            if on_epoch_end is not None and epoch_complete:
                on_epoch_end(unwrapped, epoch)
            checkpoint()
            if not epoch_complete:
                break
    finally:
        if progress is not None:
            progress.close()

    if cfg.select_metric and cfg.restore_best and state["best_epoch"] is not None:
        _load_best(unwrapped, best_dir)
        run.info("restored the best epoch %d (%s = %.4g)", state["best_epoch"],
                 cfg.select_metric, state["best_metric"])
    acc.wait_for_everyone()
    del model, opt
    acc.free_memory()  # drop the prepared (DDP) model: a live one at exit can abort gloo
    return FitResult(unwrapped, state["step"], state["epoch"], state["best_epoch"],
                     state["best_metrics"], state["history"], stopped_early)


def _save_best(model: nn.Module, folder: Path) -> None:
    from safetensors.torch import save_file

    from vqmae.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(sd, str(tmp))


def _load_best(model: nn.Module, folder: Path) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(folder / "model.safetensors"), device="cpu")
    model.load_state_dict(sd)


def config_summary(cfg: Any) -> dict[str, Any]:
    from vqmae.config import config_to_dict

    return config_to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
