"""A whole pretraining epoch from disk: discrete VQ-MAE-AV on the token store vs the raw-input MAE.

Corpus: ``--clips`` RAVDESS-like media files (640x360, 30 fps, 3.5 s, a real face; see
``bench_faces.py``). Each epoch draws one random 2-s window per clip (batch ``--batch``) and runs
masks + forward + loss + backward + AdamW at the paper preset (both models: SAF, width 320,
depth 6, decoder 3; mask ratio 0.5), data loading included (in the training process, like
``num_workers=0``). Inputs:

* ``discrete``: ``TokenDataset`` on a token store on disk (uint16 memory maps; the tokens are
  random with the clips' lengths: tokenizing is a one-off cost, reported by ``bench_tokenize``);
* ``raw_cache``: what a user of the raw model would pick for many epochs: the clips' decoded face
  crops (uint8 96x96x3, 25 fps) and power spectrograms (float32 512 bins, 50 fps) cached on disk
  as ``.npy`` memory maps, windows read from them;
* ``raw_media``: the raw model reading the media every epoch (decode, face crops from the
  prepare face cache, spectrogram), as without any cache.

Bytes read per sample: the window's bytes for the memory maps, the whole file for media.
``data_ms_per_sample`` is the loading part alone (robust on a busy machine: the model steps
dominate and drift), ``step_ms_per_sample`` the rest (best epoch of each).
``meets_target``: discrete epoch >= 3x the raw model's epoch from its cache (the paper's claim,
measured where it lives). Ratios are of the same run; ``load_avg`` says how busy the machine was.

    python benchmarks/bench_epoch.py [--clips 16] [--batch 8] [--epochs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: the sibling bench_faces

import bench_faces  # noqa: E402

A_BINS = 512


class RawCache(torch.utils.data.Dataset):
    """Random 2-s windows of cached raw features: ``audio (100, 512)`` float32, ``visual (50, 96,
    96, 3)`` float32 in [-0.5, 0.5]."""

    def __init__(self, folder: Path, clips: int, seed: int = 0):
        self.a = [np.load(folder / f"{i}_audio.npy", mmap_mode="r") for i in range(clips)]
        self.v = [np.load(folder / f"{i}_faces.npy", mmap_mode="r") for i in range(clips)]
        self.rng = np.random.default_rng(seed)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.v)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = min(self.v[i].shape[0], self.a[i].shape[0] // 2)
        s = int(self.rng.integers(0, n - 50 + 1))
        v = np.array(self.v[i][s:s + 50])  # read (copied) from the memory maps
        a = np.array(self.a[i][2 * s:2 * s + 100])
        self.bytes += v.nbytes + a.nbytes
        return {"audio": torch.from_numpy(a), "visual": torch.from_numpy(v).float().div_(255).sub_(0.5)}


def raw_features(path: Path, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Media file -> power spectrogram ``(2T, 512)`` float32 and face crops ``(T, 96, 96, 3)`` uint8."""
    from vqmae.data.clips import load_clip
    from vqmae.tokenizers.spectrogram import power_spectrogram

    clip = load_clip(path, cfg)
    spec = power_spectrogram(torch.from_numpy(clip.audio))[:, :A_BINS].numpy()
    return spec, clip.faces


class RawMedia(RawCache):
    """The same windows, decoded from the media every time."""

    def __init__(self, paths: list[Path], cfg, seed: int = 0):
        self.paths, self.cfg = paths, cfg
        self.rng = np.random.default_rng(seed)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, v = raw_features(self.paths[i], self.cfg)
        self.bytes += self.paths[i].stat().st_size
        n = min(v.shape[0], a.shape[0] // 2)
        s = int(self.rng.integers(0, n - 50 + 1))
        return {"audio": torch.from_numpy(np.ascontiguousarray(a[2 * s:2 * s + 100])),
                "visual": torch.from_numpy(np.ascontiguousarray(v[s:s + 50])).float().div_(255).sub_(0.5)}


def epoch(model, dataset, batch: int, masking, opt, modalities) -> tuple[float, float]:
    """Seconds for one epoch, and the part of it spent loading data."""
    from vqmae.mae import LossConfig, mae_loss, make_masks

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(0))
    grids, gen = model.mask_grids(), torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    data_s = 0.0
    it = iter(loader)
    while True:
        t = time.perf_counter()
        b = next(it, None)
        data_s += time.perf_counter() - t
        if b is None:
            break
        x = {m: b[m] for m in modalities}
        masks = make_masks(grids, x[modalities[0]].shape[0], masking, gen)
        loss, _ = mae_loss(model(x, masks), LossConfig(), modalities)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, data_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    from vqmae.data.clips import ClipConfig
    from vqmae.data.token_dataset import TokenDataset
    from vqmae.data.token_store import TokenStore
    from vqmae.data.token_writer import synthetic_provenance, write_token_store
    from vqmae.mae import VQMAEAV, MaskingConfig, RawMAE, mae_preset, raw_config_like

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = bench_faces.ravdess_corpus(tmp / "media", ns.clips)
        paths = sorted(root.rglob("*.mp4"))
        clip_cfg = ClipConfig(face_cache_dir=str(tmp / "face_cache"))
        (tmp / "raw").mkdir()
        lengths = []
        for i, p in enumerate(paths):  # the raw cache (and the face cache both raw readers use)
            a, v = raw_features(p, clip_cfg)
            np.save(tmp / "raw" / f"{i}_audio.npy", a)
            np.save(tmp / "raw" / f"{i}_faces.npy", v)
            lengths.append(v.shape[0])
        rng = np.random.default_rng(0)
        prov = {"audio": synthetic_provenance("audio", codebook_size=256, token_shape=(64,), frames_per_second=50),
                "visual": synthetic_provenance("visual", codebook_size=512, token_shape=(24, 24),
                                               frames_per_second=25)}
        write_token_store(tmp / "store", [{"id": f"c{i}", "speaker": "s", "label": None} for i in range(ns.clips)],
                          {"audio": [rng.integers(0, 256, (2 * t, 64), dtype=np.uint16) for t in lengths],
                           "visual": [rng.integers(0, 512, (t, 24, 24), dtype=np.uint16) for t in lengths]}, prov)
        cfg = mae_preset("paper")
        masking = MaskingConfig(ratio_mode="fixed", audio_ratio=0.5, visual_ratio=0.5)
        torch.manual_seed(0)
        models = {"discrete": VQMAEAV(cfg), "raw": RawMAE(raw_config_like(cfg))}
        opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
                for k, m in models.items()}
        data = {"discrete": TokenDataset(TokenStore.open(tmp / "store"), window_seconds=2.0, mode="random"),
                "raw_cache": RawCache(tmp / "raw", ns.clips), "raw_media": RawMedia(paths, clip_cfg)}
        store_bytes_per_window = (100 * 64 + 50 * 24 * 24) * 2
        times: dict[str, list[float]] = {k: [] for k in data}
        data_times: dict[str, list[float]] = {k: [] for k in data}
        for e in range(ns.epochs + 1):  # epoch 0: warm-up (page cache, allocator, first-call costs)
            for name, ds in data.items():
                if name == "discrete":
                    ds.set_epoch(e)
                model = models["discrete" if name == "discrete" else "raw"]
                dt, ds_t = epoch(model, ds, ns.batch, masking, opts["discrete" if name == "discrete" else "raw"],
                                 cfg.modalities)
                if e:
                    times[name].append(dt)
                    data_times[name].append(ds_t)
        reads = ns.clips * (ns.epochs + 1)
        bytes_per_sample = {"discrete": store_bytes_per_window, "raw_cache": data["raw_cache"].bytes / reads,
                            "raw_media": data["raw_media"].bytes / reads}
    rate = {k: ns.clips / min(v) for k, v in times.items()}
    result = {
        "clips": ns.clips, "batch": ns.batch, "epochs": ns.epochs, "threads": ns.threads, "preset": "paper",
        "samples_per_s": {k: round(v, 2) for k, v in rate.items()},
        "bytes_read_per_sample": {k: int(v) for k, v in bytes_per_sample.items()},
        "data_ms_per_sample": {k: round(1000 * min(v) / ns.clips, 2) for k, v in data_times.items()},
        "step_ms_per_sample": {k: round(1000 * (min(times[k]) - min(data_times[k])) / ns.clips, 1) for k in times},
        "discrete_vs_raw_cache": round(rate["discrete"] / rate["raw_cache"], 2),
        "discrete_vs_raw_media": round(rate["discrete"] / rate["raw_media"], 2),
        "bytes_ratio_raw_cache": round(bytes_per_sample["raw_cache"] / bytes_per_sample["discrete"], 1),
        "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
        "target": "discrete epoch >= 3x the raw model's epoch from its feature cache",
        "meets_target": bool(rate["discrete"] / rate["raw_cache"] >= 3.0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
