import subprocess
import sys

import pytest

from vqmae import __version__
from vqmae.cli import COMMANDS, main


def test_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vqmae {__version__}"


def test_unknown_command_suggests(capsys):
    assert main(["pretrian"]) == 2
    assert "Did you mean 'pretrain'" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in COMMANDS if n not in ("report", "tokens")])
def test_every_stage_has_help_with_its_settings(name, capsys):
    assert main([name, "--help"]) == 0
    assert "settings" in capsys.readouterr().out


def test_every_command_module_exists():
    """No command is listed in `vqmae --help` without its implementation."""
    import importlib.util

    for name, (module, _) in COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, name


def test_stage_rejects_unknown_key_with_suggestion(capsys):
    assert main(["demo", "modalitie=[audio]"]) == 2
    assert "did you mean 'modalities'" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "vqmae", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"vqmae {__version__}"


@pytest.mark.parametrize(("name", "required", "preset"), [
    ("pretrain", ["tokens", "out"], "presets (preset=NAME, from presets/pretrain.yaml): paper, base, demo, tiny"),
    ("train-tokenizer", ["manifest", "out"], "presets (preset=NAME, from presets/train_tokenizer.yaml)"),
])
def test_help_shows_presets_required_keys_descriptions_and_choices(name, required, preset, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert preset in out
    for key in required:
        assert f"  {key} REQUIRED" in out
    assert "  train.epochs = 10  [int; >= 1]\n      Passes over the training data." in out
    assert "  train.optimizer = 'adamw'  [one of adamw, adam]" in out


def test_every_training_setting_has_a_description():
    import dataclasses

    from vqmae.config import _field_types, _is_dataclass_type, _unwrap_optional, field_description
    from vqmae.mae.pretraining import PretrainConfig
    from vqmae.tokenizers.training import TrainTokenizerConfig

    def undocumented(cls, prefix=""):
        for f in dataclasses.fields(cls):
            tp, _ = _unwrap_optional(_field_types(cls)[f.name])
            if _is_dataclass_type(tp):
                yield from undocumented(tp, f"{prefix}{f.name}.")
            elif not field_description(cls, f.name):
                yield prefix + f.name

    missing = [k for c in (PretrainConfig, TrainTokenizerConfig) for k in undocumented(c)
               if not k.startswith("data.")]  # FrameDataConfig: vqmae/data/frames.py
    assert missing == []
