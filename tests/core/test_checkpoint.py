import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from vqmae.checkpoint import (
    ModelFolderError,
    PretrainedModel,
    load_pretrained,
    register_model,
)


@dataclass
class ToyConfig:
    width: int = 8
    depth: int = 2


@register_model("test-toy")
class Toy(PretrainedModel):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.layers = nn.Sequential(*[nn.Linear(config.width, config.width) for _ in range(config.depth)])
        self.norm = nn.BatchNorm1d(config.width)

    def forward(self, x):
        return self.norm(self.layers(x))


def test_save_load_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = Toy(ToyConfig(width=6, depth=3))
    model.train()
    model(torch.randn(4, 6))  # moves BN running stats
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["architecture"] == "test-toy" and meta["config"] == {"width": 6, "depth": 3}
    assert meta["format_version"] == 1 and "vqmae_version" in meta
    loaded = Toy.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, Toy) and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.fingerprint() == model.fingerprint() == meta["fingerprint"]
    assert isinstance(load_pretrained(tmp_path / "m"), Toy)


def test_fingerprint_changes_with_weights():
    a = Toy(ToyConfig())
    b = Toy(ToyConfig())
    with torch.no_grad():
        b.layers[0].weight[0, 0] += 1
    assert a.fingerprint() != b.fingerprint()


def test_pickles_are_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelFolderError, match="pickle"):
        Toy.from_pretrained(tmp_path / "model.pt")
    with pytest.raises(ModelFolderError, match="pickle"):
        Toy.from_pretrained(tmp_path)


def test_unknown_format_version_and_wrong_architecture(tmp_path):
    Toy(ToyConfig()).save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="unknown model format version 99"):
        Toy.from_pretrained(tmp_path / "m")
    meta["format_version"] = 1
    meta["architecture"] = "something-else"
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="something-else"):
        Toy.from_pretrained(tmp_path / "m")


def test_shape_mismatch_is_reported(tmp_path):
    Toy(ToyConfig(width=8)).save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["depth"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="do not match"):
        Toy.from_pretrained(tmp_path / "m")
