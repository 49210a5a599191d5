import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import support.train_fixture as fx
import torch
from safetensors.torch import load_file

from vqmae.io import read_jsonl
from vqmae.runs import Run
from vqmae.training import (
    EpochBatchSampler,
    NonFiniteLossError,
    TrainConfig,
    fit,
    list_checkpoints,
    lr_at,
)


def _cfg(**kw):
    base = dict(epochs=3, batch_size=8, lr=1e-2, progress=False, log_every=1, tensorboard=False,
                checkpoint_every=3, keep_checkpoints=10, warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 1.0, 4, 20) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 20) == pytest.approx(1.0)
    assert lr_at(4, 1.0, 4, 20) == pytest.approx(1.0)
    assert lr_at(19, 1.0, 4, 20) < 0.02
    values = [lr_at(s, 1.0, 4, 20) for s in range(4, 20)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_sampler_global_batches_do_not_depend_on_process_count():
    one = list(EpochBatchSampler(50, 8, seed=3, epoch=1, rank=0, world=1))
    r0 = list(EpochBatchSampler(50, 4, seed=3, epoch=1, rank=0, world=2))
    r1 = list(EpochBatchSampler(50, 4, seed=3, epoch=1, rank=1, world=2))
    assert len(one) == len(r0) == len(r1) == 6
    for g, a, b in zip(one, r0, r1):
        assert g == a + b
    skipped = list(EpochBatchSampler(50, 8, seed=3, epoch=1, skip=2))
    assert skipped == one[2:]
    assert list(EpochBatchSampler(50, 8, seed=3, epoch=2)) != one


def test_loss_falls_and_metrics_are_logged(tmp_path):
    res = fx.train(str(tmp_path), _cfg(epochs=10, lr=0.05))
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert res.steps == 10 * 8 and rows[-1]["step"] == res.steps
    first = sum(r["loss"] for r in rows[:8]) / 8
    last = sum(r["loss"] for r in rows[-8:]) / 8
    assert last < 0.3 * first
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "train.log").is_file()
    assert len(list_checkpoints(tmp_path)) >= 2


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    cfg = _cfg()
    full = fx.train(str(tmp_path / "full"), cfg)

    calls = {"n": 0}
    original = fx.loss_fn

    def crashing(model, batch, info):
        calls["n"] += 1
        if calls["n"] == 14:  # mid-epoch 1, after the checkpoint at step 12
            raise KeyboardInterrupt
        return original(model, batch, info)

    out = tmp_path / "interrupted"
    fx.loss_fn = crashing
    try:
        with pytest.raises(KeyboardInterrupt):
            fx.train(str(out), cfg)
    finally:
        fx.loss_fn = original
    assert int(list_checkpoints(out)[-1].name.split("_")[1]) == 12
    resumed = fx.train(str(out), cfg, resume=True)
    assert resumed.steps == full.steps
    for k, v in _weights(full.model).items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # the logged losses after the resume point equal the uninterrupted run's
    a = {r["step"]: r["loss"] for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")}
    b = {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl")}
    assert all(a[s] == b[s] for s in range(13, full.steps + 1))


def test_non_finite_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    def nan_after(model, batch, info):
        loss, m = fx.loss_fn(model, batch, info)
        return (loss * float("nan") if info.step >= 5 else loss), m

    model = fx.make_model()
    run = Run(tmp_path, tensorboard=False)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5"):
        fit(model, fx.make_data(), nan_after, _cfg(), run)
    run.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003"]


def test_model_selection_uses_eval_metric_and_restores_best(tmp_path):
    scores = iter([0.2, 0.9, 0.5])
    snapshots = {}

    def eval_fn(model, epoch):
        snapshots[epoch] = _weights(model)
        return {"val_score": next(scores)}

    model = fx.make_model()
    run = Run(tmp_path, tensorboard=False)
    res = fit(model, fx.make_data(), fx.loss_fn, _cfg(select_metric="val_score"), run, eval_fn=eval_fn)
    run.close()
    assert res.best_epoch == 1 and res.best_metrics["val_score"] == 0.9
    for k, v in snapshots[1].items():
        assert torch.equal(v, res.model.state_dict()[k])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_data_parallel_equals_one_process_on_combined_batch(tmp_path):
    common = ["epochs=2", "lr=0.01", "progress=false", "tensorboard=false", "log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fixture = str(Path(__file__).parents[1] / "support" / "train_fixture.py")
    subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(_free_port()), fixture, str(tmp_path / "two"), "batch_size=4", *common],
        check=True, env=env, timeout=300,
    )
    subprocess.run([sys.executable, fixture, str(tmp_path / "one"), "batch_size=8", *common],
                   check=True, env=env, timeout=300)
    r0 = load_file(str(tmp_path / "two" / "weights_rank0.safetensors"))
    r1 = load_file(str(tmp_path / "two" / "weights_rank1.safetensors"))
    one = load_file(str(tmp_path / "one" / "weights_rank0.safetensors"))
    for k in one:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"
        torch.testing.assert_close(r0[k], one[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(one["0.weight"], fx.make_model().state_dict()["0.weight"])


def _poison_after_epoch(bad_epoch):
    def hook(model, epoch):
        if epoch == bad_epoch:  # the loss of this epoch was finite; the weights now are not
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
    return hook


def test_non_finite_weights_are_never_checkpointed_and_the_newest_finite_one_stays(tmp_path):
    """Fault 2: a diverging run wrote a NaN/inf checkpoint and pruned the good ones."""
    cfg = _cfg(epochs=4, checkpoint_every=0, keep_checkpoints=1)
    model = fx.make_model()
    run = Run(tmp_path, tensorboard=False)
    with pytest.raises(NonFiniteLossError, match="non-finite weights after step 16"):
        fit(model, fx.make_data(), fx.loss_fn, cfg, run, on_epoch_end=_poison_after_epoch(1))
    run.close()
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["step_00000008"]  # epoch 1's, finite, kept
    for t in load_file(str(ckpts[-1] / "model.safetensors")).values():
        assert torch.isfinite(t).all()
    # and the run is recoverable: --resume continues from it to the end
    res = fx.train(str(tmp_path), cfg, resume=True)
    assert res.steps == 32
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values())


def test_stale_partial_checkpoints_are_cleaned_and_never_resumed_from(tmp_path):
    """Fault 5: a kill during pruning left an empty/partial checkpoint folder forever."""
    cfg = _cfg(epochs=2, checkpoint_every=0, keep_checkpoints=5)
    fx.train(str(tmp_path), cfg)
    ckpt = tmp_path / "checkpoints"
    good = list_checkpoints(tmp_path)[-1]
    assert good.name == "step_00000016"
    # a later checkpoint folder half-deleted by a killed prune: state file kept, weights gone
    partial = ckpt / "step_00000099"
    shutil.copytree(good, partial)
    (partial / "model.safetensors").unlink()
    (ckpt / "step_00000100").mkdir()  # emptied
    (ckpt / ".tmp_step_00000101").mkdir()
    (ckpt / ".del_step_00000004").mkdir()
    assert list_checkpoints(tmp_path) == [ckpt / "step_00000008", good]
    res = fx.train(str(tmp_path), _cfg(epochs=3, checkpoint_every=0, keep_checkpoints=5), resume=True)
    assert res.steps == 24
    left = sorted(p.name for p in ckpt.iterdir())
    assert left == ["step_00000008", "step_00000016", "step_00000024"]
