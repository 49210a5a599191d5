"""The training loop shared by every stage (tokenizers, MAE pretraining, fine-tuning).

What it guarantees (tested in tests/core/test_training.py):

* **Data parallel everywhere**: :func:`make_accelerator` builds ``Accelerator(cpu=not cuda)``, so
  ``accelerate launch --multi_gpu --num_processes 2`` really runs two ranks on CPU too.
  Global batch ``k`` of an epoch is the same set of samples whatever the number of processes:
  rank ``r`` of ``W`` takes its slice of it. So 2 ranks × batch b ≡ 1 rank × batch 2b.
* **Exact resume**: sampling depends only on ``(seed, epoch)``; every micro-step reseeds torch
  from ``(seed, step, rank)``; checkpoints (accelerate ``save_state`` + ``trainer_state.json``,
  :mod:`vqmae.checkpoint`) are written atomically at optimizer-step boundaries. A resumed run
  equals an uninterrupted one on CPU.
* LR = ``lr`` or ``base_lr × effective batch / 256`` (printed), linear warm-up then cosine,
  set per optimizer step; gradient accumulation; clipping; bf16 autocast on GPU (``auto``).
* A non-finite loss stops the run with a message; a checkpoint is written only when every
  weight and optimizer state is finite (else the run stops), so the newest checkpoint is always
  one to resume from (with a lower lr). Partial checkpoint folders left by a kill are removed.
* Model selection: ``eval_fn`` after each epoch; the best epoch by ``select_metric`` is saved
  to ``RUN/best/`` and restored at the end when ``restore_best``.

The loop is :func:`fit` = :func:`plan_training` + per epoch :func:`train_one_epoch`, then
:func:`evaluate_and_select` and :func:`save_training_checkpoint` (as MAE's ``engine_pretrain``).
Datasets with random items (crops, noise) should derive their randomness from
``(seed, epoch, index)``; ``fit`` calls ``dataset.set_epoch(epoch)`` when it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vqmae.checkpoint import (
    all_finite,
    clean_stale_checkpoints,
    list_checkpoints,
    load_weights,
    read_trainer_state,
    save_training_checkpoint,
    save_weights,
)
from vqmae.config import setting
from vqmae.distributed import (  # noqa: F401  (re-exported: stages import them from here)
    barrier,
    init_distributed_if_launched,
    is_main_process,
    make_accelerator,
    register_process_group_release,
    release_process_group,
    seed_everything,
)
from vqmae.runs import Run
from vqmae.schedule import (  # noqa: F401  (re-exported)
    EpochBatchSampler,
    learning_rate,
    lr_at,
    make_optimizer,
    param_groups,
)

__all__ = ["TrainConfig", "StepInfo", "FitResult", "NonFiniteLossError", "fit", "list_checkpoints",
           "make_accelerator", "seed_everything", "lr_at", "learning_rate", "EpochBatchSampler"]


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or the weights become NaN/inf; the newest (finite) checkpoint stays."""


@dataclass
class TrainConfig:
    """Loop settings shared by every training stage (embedded as ``train`` in stage configs)."""

    epochs: int = setting(10, ge=1, help="Passes over the training data.")
    max_steps: int = setting(0, ge=0, help="Stop after this many optimizer steps (0 = run all epochs).")
    batch_size: int = setting(16, ge=1, help="Per-process batch size; effective batch = "
                              "batch_size × processes × grad_accum.")
    grad_accum: int = setting(1, ge=1, help="Micro-batches accumulated per optimizer step.")
    lr: float = setting(0.0, ge=0, help="Absolute learning rate; 0 means base_lr × effective batch / 256.")
    base_lr: float = setting(1e-3, gt=0, help="Learning rate per 256 samples of effective batch.")
    min_lr: float = setting(0.0, ge=0, help="Learning rate at the end of the cosine schedule.")
    weight_decay: float = setting(0.05, ge=0, help="AdamW weight decay (matrices only).")
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam(W) betas."""
    optimizer: Literal["adamw", "adam"] = "adamw"
    """AdamW (decoupled weight decay) or Adam."""
    warmup_epochs: float = setting(0.0, ge=0, help="Linear warm-up length in epochs.")
    warmup_steps: int = setting(0, ge=0, help="Linear warm-up in optimizer steps; if > 0, "
                                "overrides warmup_epochs.")
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule after the warm-up."""
    grad_clip: float = setting(0.0, ge=0, help="Clip the gradient norm to this (0 = off).")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """auto: bf16 on GPU, fp32 on CPU."""
    find_unused_parameters: bool = False
    """Data parallel only: allow steps in which some parameters get no gradient (a modality left
    out of a batch, a head's stand-in for an absent modality). Costs a graph walk per step."""
    seed: int = setting(0, ge=0, help="Seed of sampling, initialisation and masks.")
    deterministic: bool = True
    """Deterministic torch kernels (``torch.use_deterministic_algorithms``): the same seed gives
    the same numbers run after run; false may be faster on GPU."""
    num_workers: int = setting(0, ge=0, help="DataLoader worker processes (0 = load in the main process).")
    log_every: int = setting(10, ge=1, help="Log training metrics every N optimizer steps.")
    checkpoint_every: int = setting(0, ge=0, help="Save resumable state every N optimizer steps "
                                    "(0 = at the end of every epoch only).")
    keep_checkpoints: int = setting(2, ge=0, help="Checkpoints kept (newest first; 0 = keep all).")
    eval_every: int = setting(1, ge=1, help="Run eval_fn every N epochs.")
    select_metric: str = ""
    """Metric of eval_fn that picks the best epoch ('' = keep the last)."""
    select_mode: Literal["max", "min"] = "max"
    """Whether a higher or a lower select_metric is better."""
    restore_best: bool = True
    """Restore the best epoch's weights at the end (with select_metric)."""
    tensorboard: bool = True
    """Write TensorBoard events to RUN/tb."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: each must be in [0, 1), got {tuple(self.betas)}")


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


def _step_seed(seed: int, micro_step: int, rank: int) -> int:
    return (seed * 1_000_003 + micro_step * 9_176 + rank * 7_919 + 17) % (2**63 - 1)


# ---------------------------------------------------------------------------------- loop


LossFn = Callable[[nn.Module, Any, StepInfo], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module, int], "dict[str, float]"]


@dataclass
class TrainPlan:
    """Sizes of one training run, fixed before the first step."""

    samples: int
    world: int
    micro_per_epoch: int
    """Micro-batches per epoch and rank that fill whole optimizer steps."""
    steps_per_epoch: int
    total_steps: int
    effective_batch: int
    peak_lr: float
    warmup: int


def plan_training(cfg: TrainConfig, samples: int, world: int) -> TrainPlan:
    """Steps, effective batch and learning rate of a run over ``samples`` items."""
    steps_per_epoch = samples // (cfg.batch_size * world) // cfg.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"dataset of {samples} items is too small for batch_size {cfg.batch_size} × {world} "
            f"processes × grad_accum {cfg.grad_accum}: lower batch_size"
        )
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    effective = cfg.batch_size * world * cfg.grad_accum
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else round(cfg.warmup_epochs * steps_per_epoch)
    return TrainPlan(samples, world, steps_per_epoch * cfg.grad_accum, steps_per_epoch, total,
                     effective, learning_rate(cfg, effective), warmup)


def new_state() -> dict[str, Any]:
    """The trainer state saved with every checkpoint (JSON-safe)."""
    return {"step": 0, "epoch": 0, "micro_in_epoch": 0, "best_metric": None, "best_epoch": None,
            "best_metrics": {}, "history": []}


def resume_state(acc, run: Run) -> dict[str, Any]:
    """Load the newest complete checkpoint of ``run`` into ``acc``'s objects; its trainer state
    (a fresh one when there is none)."""
    ckpts = list_checkpoints(run.dir)
    if not ckpts:
        run.info("--resume: no checkpoint in %s, starting from scratch", run.checkpoint_dir)
        return new_state()
    acc.load_state(str(ckpts[-1]))
    state = read_trainer_state(ckpts[-1])
    run.info("resumed from %s (step %d, %d epoch(s) done)", ckpts[-1], state["step"], state["epoch"])
    return state


def checkpoint(acc, model: nn.Module, opt, run: Run, state: dict[str, Any], keep: int) -> None:
    """Save resumable state if every weight and optimizer value is finite on every rank; else
    stop with :class:`NonFiniteLossError` (the newest checkpoint, finite, stays)."""
    finite = torch.tensor([1.0 if all_finite(acc.unwrap_model(model), opt) else 0.0], device=acc.device)
    if acc.num_processes > 1:
        finite = acc.reduce(finite, reduction="sum") / acc.num_processes
    if finite.item() < 1.0:
        newest = list_checkpoints(run.dir)
        raise NonFiniteLossError(
            f"non-finite weights after step {state['step']} (epoch {state['epoch'] + 1}): not saved. "
            f"The newest finite checkpoint is {newest[-1] if newest else 'none'}; resume from it "
            "with a lower lr or grad_clip."
        )
    save_training_checkpoint(acc, run.checkpoint_dir, state, keep)


def _log_running(run: Run, state: dict[str, Any], epoch: int, lr: float, running: dict[str, float],
                 n: int) -> None:
    row = {"step": state["step"], "epoch": epoch, "split": "train", "lr": lr}
    row.update({k: v / n for k, v in running.items()})
    run.log_metrics(row)


def train_one_epoch(model: nn.Module, opt, loader: DataLoader, loss_fn: LossFn, acc, cfg: TrainConfig,
                    plan: TrainPlan, state: dict[str, Any], run: Run, progress=None,
                    save: Callable[[], None] | None = None) -> bool:
    """Run the rest of epoch ``state["epoch"]`` (from ``state["micro_in_epoch"]``), updating
    ``state`` after each micro-batch. Returns whether the epoch was completed (False when
    ``total_steps`` was reached first)."""
    epoch, rank = state["epoch"], acc.process_index
    running: dict[str, float] = {}
    running_n = 0
    model.train()
    for batch in loader:
        if state["micro_in_epoch"] >= plan.micro_per_epoch or state["step"] >= plan.total_steps:
            break
        micro_step = epoch * plan.micro_per_epoch + state["micro_in_epoch"]
        torch.manual_seed(_step_seed(cfg.seed, micro_step, rank))
        gen = torch.Generator(device="cpu").manual_seed(_step_seed(cfg.seed + 1, micro_step, rank))
        info = StepInfo(state["step"], epoch, micro_step, gen, acc.device)
        batch = send_to_device(batch, acc.device, non_blocking=True)
        with acc.accumulate(model):
            with acc.autocast():
                loss, metrics = loss_fn(model, batch, info)
            _check_finite_loss(acc, loss, state, run)
            acc.backward(loss)
            if acc.sync_gradients:
                lr = lr_at(state["step"], plan.peak_lr, plan.warmup, plan.total_steps, cfg.schedule,
                           cfg.min_lr)
                for group in opt.param_groups:
                    group["lr"] = lr
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        state["micro_in_epoch"] += 1
        running["loss"] = running.get("loss", 0.0) + float(loss.detach())
        for k, v in metrics.items():
            running[k] = running.get(k, 0.0) + float(v)
        running_n += 1
        if state["micro_in_epoch"] % cfg.grad_accum:
            continue
        state["step"] += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if state["step"] % cfg.log_every == 0 or state["step"] == plan.total_steps:
            _log_running(run, state, epoch, opt.param_groups[0]["lr"], running, running_n)
            running, running_n = {}, 0
        if (save is not None and cfg.checkpoint_every > 0 and state["step"] % cfg.checkpoint_every == 0
                and state["micro_in_epoch"] < plan.micro_per_epoch and state["step"] < plan.total_steps):
            save()
    if running_n:
        _log_running(run, state, epoch, opt.param_groups[0]["lr"], running, running_n)
    return state["micro_in_epoch"] >= plan.micro_per_epoch


def _check_finite_loss(acc, loss: torch.Tensor, state: dict[str, Any], run: Run) -> None:
    finite = torch.tensor([1.0 if torch.isfinite(loss.detach()).all() else 0.0], device=acc.device)
    if acc.num_processes > 1:
        finite = acc.reduce(finite, reduction="sum") / acc.num_processes
    if finite.item() < 1.0:
        raise NonFiniteLossError(
            f"non-finite loss at step {state['step']} (epoch {state['epoch'] + 1}): "
            f"{loss.item() if loss.numel() == 1 else loss}; stopping. "
            f"The last good checkpoint stays in {run.checkpoint_dir}. "
            "Try a lower lr, grad_clip, or mixed_precision=no."
        )


def shown_metric(name: str, value: float) -> float:
    """A metric as logs show it: fine-tuning's ``selection`` (UAR minus a 1e-6 · cross-entropy
    tie-break) reads 0 for a zero UAR, not -1.6e-06."""
    return max(value, 0.0) if name == "selection" else value


def evaluate_and_select(model: nn.Module, eval_fn: EvalFn, epoch: int, cfg: TrainConfig,
                        state: dict[str, Any], run: Run, acc) -> None:
    """``eval_fn`` after epoch ``epoch`` (0-based; logged 1-based); logs the row, appends it to
    ``state["history"]`` and, with ``select_metric``, saves a new best epoch to ``RUN/best``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        metrics = eval_fn(model, epoch)
    model.train(was_training)
    row = {"step": state["step"], "epoch": epoch, "split": "val", **metrics}
    run.log_metrics(row)
    state["history"].append(row)
    run.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, ", ".join(
        f"{k} {shown_metric(k, v):.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
    if not cfg.select_metric:
        return
    if cfg.select_metric not in metrics:
        raise KeyError(f"select_metric '{cfg.select_metric}' not among eval metrics {list(metrics)}")
    value, best = float(metrics[cfg.select_metric]), state["best_metric"]
    if best is None or (value > best if cfg.select_mode == "max" else value < best):
        state["best_metric"], state["best_epoch"] = value, epoch
        state["best_metrics"] = dict(metrics)
        if acc.is_main_process:
            save_weights(model, run.dir / "best")
        acc.wait_for_everyone()


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
    plan = plan_training(cfg, len(dataset), acc.num_processes)  # type: ignore[arg-type]
    run.info(
        "training: %d samples, %d process(es), effective batch %d (= %d × %d × accum %d), "
        "lr %.3g (%s), %d steps (%d per epoch), warm-up %d, precision %s, %d torch thread(s)",
        plan.samples, plan.world, plan.effective_batch, cfg.batch_size, plan.world, cfg.grad_accum,
        plan.peak_lr, "set" if cfg.lr > 0 else f"base_lr {cfg.base_lr:g} × {plan.effective_batch}/256",
        plan.total_steps, plan.steps_per_epoch, plan.warmup, acc.mixed_precision, torch.get_num_threads(),
    )
    seed_everything(cfg.seed, cfg.deterministic)
    opt = optimizer or make_optimizer(model, cfg, plan.peak_lr)
    model, opt = acc.prepare(model, opt)
    unwrapped = acc.unwrap_model(model)
    if acc.is_main_process:
        removed = clean_stale_checkpoints(run.checkpoint_dir)
        if removed:
            run.warning("removed %d partial checkpoint folder(s): %s", len(removed),
                        ", ".join(p.name for p in removed))
    acc.wait_for_everyone()
    state = resume_state(acc, run) if resume else new_state()

    def save() -> None:
        checkpoint(acc, model, opt, run, state, cfg.keep_checkpoints)

    progress = None
    if cfg.progress and acc.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=plan.total_steps, initial=state["step"], desc="train", unit="step",
                        dynamic_ncols=True, leave=False)
    try:
        while state["step"] < plan.total_steps and state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            # whole optimizer steps only: the trailing micro-batches that do not fill one are dropped
            sampler = EpochBatchSampler(plan.samples, cfg.batch_size, cfg.seed, epoch, acc.process_index,
                                        plan.world, shuffle=True, skip=state["micro_in_epoch"])
            loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                num_workers=cfg.num_workers,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch),
                                persistent_workers=False)
            complete = train_one_epoch(model, opt, loader, loss_fn, acc, cfg, plan, state, run,
                                       progress, save)
            if complete:
                state["epoch"], state["micro_in_epoch"] = epoch + 1, 0
                if eval_fn is not None and (epoch + 1) % cfg.eval_every == 0:
                    evaluate_and_select(unwrapped, eval_fn, epoch, cfg, state, run, acc)
                if on_epoch_end is not None:
                    on_epoch_end(unwrapped, epoch)
            save()
            if not complete:
                break
    finally:
        if progress is not None:
            progress.close()

    if cfg.select_metric and cfg.restore_best and state["best_epoch"] is not None:
        load_weights(unwrapped, run.dir / "best")
        run.info("restored the best epoch %d (%s = %.4g)", state["best_epoch"] + 1,
                 cfg.select_metric, shown_metric(cfg.select_metric, state["best_metric"]))
    acc.wait_for_everyone()
    model = opt = None  # noqa: F841
    acc.free_memory()  # drop the prepared (DDP) model: a live one at exit can abort gloo
    return FitResult(unwrapped, state["step"], state["epoch"], state["best_epoch"],
                     state["best_metrics"], state["history"], False)
