from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from vqmae.config import ConfigError, config_to_dict, parse_config, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class Cfg:
    out: str = "runs/x"
    epochs: int = 3
    fresh: bool = False
    mode: Literal["a", "b"] = "a"
    depth: int | None = None
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)


def test_defaults_and_all_override_forms():
    cfg = parse_config(Cfg, ["epochs=5", "--optim.lr", "2e-4", "--mode=b", "--fresh", "tags=x,y"])
    assert cfg.epochs == 5 and cfg.optim.lr == pytest.approx(2e-4) and cfg.mode == "b"
    assert cfg.fresh is True and cfg.tags == ["x", "y"]
    assert parse_config(Cfg, ["--no-fresh"]).fresh is False
    assert parse_config(Cfg, ["--optim.betas", "[0.8, 0.9]"]).optim.betas == (0.8, 0.9)
    assert parse_config(Cfg, ["depth=null"]).depth is None
    assert parse_config(Cfg, ["depth=12"]).depth == 12


def test_yaml_files_in_order_then_overrides(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("epochs: 7\noptim:\n  lr: 0.5\n")
    b.write_text("epochs: 9\n")
    cfg = parse_config(Cfg, ["--config", str(a), "--config", str(b), "optim.betas=[0.1,0.2]"])
    assert cfg.epochs == 9 and cfg.optim.lr == 0.5 and cfg.optim.betas == (0.1, 0.2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["epoch=3"], "did you mean 'epochs'"),
        (["optim.lrr=1"], "did you mean 'optim.lr'"),
        (["epochs=three"], "expected an integer"),
        (["mode=c"], "not one of"),
        (["fresh=maybe"], "expected true/false"),
        (["epochs.x=1"], "not a group of settings"),
        (["stray"], "cannot read argument"),
    ],
)
def test_rejections_are_clear(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(Cfg, argv)


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"optim\.momentum.*bad\.yaml"):
        parse_config(Cfg, ["--config", str(f)])


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = parse_config(Cfg, ["epochs=4", "tags=[a]", "optim.lr=0.25"])
    path = save_config(cfg, tmp_path / "config.yaml")
    again = parse_config(Cfg, ["--config", str(path)])
    assert again == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)


def test_presets_select_values_by_another_setting(monkeypatch):
    """A preset's ``_by_<field>`` table adds the values for that field's current value."""
    import vqmae.presets as presets

    table = {"small": {"epochs": 2, "_by_mode": {"a": {"optim": {"lr": 0.5}}, "b": {"epochs": 7}}}}
    monkeypatch.setattr(presets, "_table", lambda stage: table)

    @dataclass
    class WithPreset(Cfg):
        preset: str = "small"

    cfg = parse_config(WithPreset, [], presets="x")
    assert (cfg.epochs, cfg.optim.lr) == (2, 0.5)
    cfg = parse_config(WithPreset, ["mode=b"], presets="x")
    assert (cfg.epochs, cfg.optim.lr) == (7, 1e-3)
    cfg = parse_config(WithPreset, ["mode=b", "epochs=9"], presets="x")
    assert cfg.epochs == 9
