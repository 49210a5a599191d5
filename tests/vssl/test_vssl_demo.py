"""`vqmae demo vssl=true`: the VSSL stages (pretrain-vssl ×3, finetune ×3) run after finetune and
before the report, wired to the run's corpus, folds and token store; the default demo is unchanged;
the report's VSSL section puts the encoders beside VQ-MAE-AV's audio branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqmae.config import parse_config
from vqmae.io import write_json
from vqmae.run_report import build_report
from vqmae.stage_runner import PipelineConfig, run, stage_commands
from vqmae.vssl.pipeline import PRETRAIN_RECIPE, VSSL_STAGES


def test_vssl_stages_are_wired_and_off_by_default(tmp_path):
    plain = stage_commands(PipelineConfig(), tmp_path)
    assert not set(plain) & set(VSSL_STAGES)
    cfg = parse_config(PipelineConfig, ["preset=quick", "vssl=true"], presets="demo")
    cmds = stage_commands(cfg, tmp_path)
    assert {k: v for k, v in cmds.items() if k not in VSSL_STAGES} == stage_commands(
        parse_config(PipelineConfig, ["preset=quick"], presets="demo"), tmp_path)
    for task in ("visual", "audio", "multitask"):
        pre, ft = cmds[f"vssl_{task}"], cmds[f"finetune_vssl_{task}"]
        assert pre[:6] == ["--manifest", str(tmp_path / "prepared"), "--out", str(tmp_path / "vssl" / f"pretrain_{task}"),
                           "--task", task] and all(a in pre for a in PRETRAIN_RECIPE) and "detect_faces=false" in pre
        assert ft[ft.index("--init") + 1] == str(tmp_path / "vssl" / f"pretrain_{task}" / "audio_encoder")
        assert ft[ft.index("--tokens") + 1] == str(tmp_path / "tokens")
        assert ft[ft.index("--folds") + 1] == str(tmp_path / "prepared" / "folds.json")
        assert "modalities=[audio]" in ft and "window_seconds=1" in ft  # the demo VQ-MAE-AV's window
        assert "max_folds=1" in ft  # the quick preset's fine-tuning arguments
    assert "experiments=[finetune,scratch]" in cmds["finetune_vssl_audio"]


def test_vssl_stages_run_after_finetune_and_before_the_report(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr("vqmae.cli.main", lambda argv: calls.append(argv) or 0)
    cfg = PipelineConfig(out=str(tmp_path / "run"), vssl=True, in_process=True)
    assert run(cfg) == 0
    order = [c[0] for c in calls]
    assert order[-7:] == ["finetune", "pretrain-vssl", "pretrain-vssl", "pretrain-vssl",
                          "finetune", "finetune", "finetune"]
    assert [c[c.index("--task") + 1] for c in calls if c[0] == "pretrain-vssl"] == ["visual", "audio", "multitask"]
    calls.clear()
    assert run(PipelineConfig(out=str(tmp_path / "plain"), in_process=True)) == 0
    assert "pretrain-vssl" not in [c[0] for c in calls]


def _results(experiments: dict[str, tuple[list[str], float]], **extra) -> dict:
    def summary(v: float) -> dict:
        return {m: {"mean": v, "std": 0.01, "n": 5, "values": [v] * 5} for m in ("war", "uar", "ccc")}

    return {"task": "both", "classes": ["a", "b", "c"], "experiments": {
        name: {"name": name, "modalities": mods, "summary": summary(v), "summary_train": summary(v + 0.1),
               "folds": [{}] * 5, "confusion": [[5, 0, 0], [0, 5, 0], [0, 0, 5]]}
        for name, (mods, v) in experiments.items()}, **extra}


@pytest.mark.usefixtures("one_thread")
def test_report_section_beside_vqmae_av_audio(tmp_path):
    run_dir = tmp_path / "run"
    av = _results({"finetune-av": (["audio", "visual"], 0.5), "codes-visual": (["visual"], 0.45)},
                  missing_modality=[{"experiment": "finetune-av", "modalities": ["audio"],
                                     "summary": {"uar": {"mean": 0.35, "std": 0.05, "n": 5}}}])
    write_json(run_dir / "finetune" / "results.json", av)
    noise = {"metric": "uar", "rows": [{"experiment": "finetune-audio", "noise": "clean", "snr_db": None,
                                        "summary": {"uar": {"mean": 0.41, "std": 0.04}}},
                                       {"experiment": "finetune-audio", "noise": "white", "snr_db": 0.0,
                                        "summary": {"uar": {"mean": 0.2, "std": 0.03}}}]}
    write_json(Path(run_dir / "vssl" / "finetune_audio" / "results.json"),
               _results({"finetune-audio": (["audio"], 0.41), "scratch-audio": (["audio"], 0.40)}, noise=noise))
    md = build_report(run_dir, ladder=False)[0].read_text()
    section = md[md.index("Visually guided self-supervised audio encoders"):]
    assert "VSSL audio finetune-audio | 51.0 ± 1.0 | 41.0 ± 1.0 | 41.0 ± 1.0 | 0.410 ± 0.010" in section
    assert "VSSL audio scratch-audio" in section and "VQ-MAE-AV finetune-av, given audio alone" in section
    assert "codes-visual" not in section and "VQ-MAE-AV finetune-av |" not in section  # audio inputs only
    assert "| chance |  | 33.3 | 33.3 |" in section and "white 0 dB" in section
    assert "Not found" in section and "VSSL visual" in section
    write_json(tmp_path / "plain" / "finetune" / "results.json", av)  # a run without VSSL: no section
    assert "Visually guided" not in build_report(tmp_path / "plain", ladder=False)[0].read_text()
