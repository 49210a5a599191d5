"""Tokenization job throughput (1 and 2 processes) with its time split, and its memory vs clip count.

    python benchmarks/bench_tokenize.py                       # generated face-centred 2-s clips
    python benchmarks/bench_tokenize.py --manifest runs/demo/data/manifest.jsonl   # a real corpus
    python benchmarks/bench_tokenize.py --device cuda         # on a GPU

What it runs: the real job (``python -m vqmae.pipelines.tokenize``, and ``torchrun
--nproc_per_node 2`` for 2 processes) with the ``paper`` audio and visual VQ-VAEs (random weights:
the cost does not depend on them), decode + crop in DataLoader workers, encoding in the main
process. Clips/s is measured by the job from its first clip to its last (start-up excluded; the
wall time with start-up is reported too). The time split per clip: ``decode`` (PyAV/decord,
measured alone on the same files), ``face`` (alignment + face crop: load_aligned_clip minus
decode), ``prepare`` (spectrogram, face scaling, in workers) and ``encode`` (both VQ-VAEs).

Memory: peak RSS (VmHWM) of the job's main process at 100 and 1000 clips (a loader that returns
synthetic 2-s clips instead of decoding, tiny tokenizers so that 1000 clips take seconds): the job
keeps one part in memory, so its peak must not grow with the clip count. (Workers hold one clip
each; their RSS is mostly pages shared with the main process.)

Ceiling: ``encode_ceiling_clips_per_s`` = 1 / the encoding time of one clip alone (both VQ-VAEs,
all cores, no decoding; measured in the same run), ``fraction_of_encode_ceiling`` = the 1-process
job's clips/s over it. ``meets_target``: >= 5 clips/s, or, where the ceiling itself is below 5,
>= 85 % of it.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------- corpus


def write_clip(path: Path, seconds: float, size: int, seed: int, sample_rate: int = 44100) -> None:
    """A face-centred-like clip: moving smooth blobs (h264, crf 23) + a voiced-ish tone (AAC)."""
    import av

    rng = np.random.default_rng(seed)
    n = int(round(seconds * 25))
    yy, xx = np.mgrid[0:size, 0:size] / size
    container = av.open(str(path), "w")
    vs = container.add_stream("libx264", rate=Fraction(25))
    vs.height = vs.width = size
    vs.pix_fmt = "yuv420p"
    vs.options = {"crf": "23", "preset": "veryfast"}
    a = container.add_stream("aac", rate=sample_rate)  # every stream before the first packet
    a.layout = "mono"
    base = rng.uniform(0.2, 0.8, 3)
    for t in range(n):
        cx, cy = 0.5 + 0.1 * np.sin(t / 7 + seed), 0.5 + 0.1 * np.cos(t / 5 + seed)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
        img = (255 * np.clip(base[None, None] * (0.4 + 0.6 * blob[..., None])
                             + 0.03 * rng.standard_normal((size, size, 1)), 0, 1)).astype(np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(p)
    for p in vs.encode():
        container.mux(p)
    tt = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * tt + seed)
    wave = (0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sample_rate) * (1 + np.sin(2 * np.pi * 3 * tt)) / 2
            + 0.01 * rng.standard_normal(tt.size)).astype(np.float32)
    for s in range(0, wave.size, 1024):
        fr = av.AudioFrame.from_ndarray(wave[None, s:s + 1024], format="fltp", layout="mono")
        fr.sample_rate, fr.pts = sample_rate, s
        for p in a.encode(fr):
            container.mux(p)
    for p in a.encode():
        container.mux(p)
    container.close()


def make_corpus(folder: Path, n: int, seconds: float = 2.0, size: int = 128) -> Path:
    from vqmae.data.manifest import ClipRecord, write_manifest

    recs = []
    for i in range(n):
        rel = f"clips/c{i:05d}.mp4"
        (folder / "clips").mkdir(parents=True, exist_ok=True)
        write_clip(folder / rel, seconds, size, seed=i)
        recs.append(ClipRecord(id=f"c{i:05d}", path=rel, speaker=f"spk{i % 10}", label=i % 6))
    return write_manifest(folder, recs, root=folder, name="bench", classes=[str(k) for k in range(6)],
                          extra={"media": {"detect_faces": False}})


def synthetic_clip(path: str, clip_config: dict) -> SimpleNamespace:
    """Loader for the memory runs: a 2-s clip without decoding (``path`` is not read)."""
    rng = np.random.default_rng(abs(hash(path)) % 2**32)
    return SimpleNamespace(audio=rng.standard_normal(32000).astype(np.float32),
                           faces=rng.integers(0, 256, (50, 96, 96, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------- the job


def save_tokenizers(folder: Path, preset: str) -> tuple[Path, Path]:
    import torch

    from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

    torch.manual_seed(0)
    a, v = AudioVQVAE(audio_preset(preset)).eval(), VisualVQVAE(visual_preset(preset)).eval()
    with torch.no_grad():  # let k-means quantizers initialise before the weights are saved
        a.tokenize(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
        v.tokenize(np.random.default_rng(0).integers(0, 256, (16, 96, 96, 3), dtype=np.uint8))
    return a.save_pretrained(folder / f"audio_{preset}"), v.save_pretrained(folder / f"visual_{preset}")


def run_job(manifest: Path, toks: tuple[Path, Path], out: Path, procs: int, device: str,
            extra: list[str] = ()) -> dict:
    stats_file = out.parent / f"{out.name}.stats.jsonl"
    args = ["-m", "vqmae.pipelines.tokenize", "--manifest", str(manifest), "--audio-tokenizer", str(toks[0]),
            "--visual-tokenizer", str(toks[1]), "--out", str(out), "--progress", "false",
            "--device", device, "--stats-file", str(stats_file), *extra]
    cmd = [sys.executable, *args] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "benchmarks"), str(REPO),
                                                       os.environ.get("PYTHONPATH", "")]))
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"tokenize failed ({r.returncode}):\n{r.stderr[-3000:]}")
    ranks = [json.loads(x) for x in stats_file.read_text().splitlines()]
    clips = sum(s["clips"] + s["errors"] for s in ranks)
    busy = max((s["clips"] + s["errors"]) / s["clips_per_s"] for s in ranks if s["clips_per_s"])
    return {"processes": procs, "clips": clips, "clips_per_s": round(clips / busy, 3),
            "wall_s_with_startup": round(wall, 1),
            "cpu_utilization": round(cpu_s / (wall * (os.cpu_count() or 1)), 2),
            "per_clip_s": {k[2:]: round(sum(s[k] for s in ranks) / max(clips, 1), 4)
                           for k in ("t_load", "t_prepare", "t_encode", "t_write", "t_wait")},
            "peak_rss_mb_main": round(max(s["peak_rss_mb"] for s in ranks), 1),
            "workers_per_process": ranks[0]["workers"], "device": ranks[0]["device"]}


def encode_probe(preset: str) -> dict:
    """FLOPs of encoding one 2-s clip, its time alone (this process's threads) and a matmul probe.

    On a shared machine seconds drift; the fraction of the same-run matmul probe does not.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus)  # as the 1-process job's main without face detection (all cores)
    a, v = AudioVQVAE(audio_preset(preset)).eval(), VisualVQVAE(visual_preset(preset)).eval()
    rng = np.random.default_rng(0)
    xa = a.prepare(rng.standard_normal(32000).astype(np.float32))
    xv = v.prepare(rng.integers(0, 256, (50, 96, 96, 3), dtype=np.uint8))

    def best(f, n=5):
        f()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            a.encode(xa)
            v.encode(xv)
        flops = fc.get_total_flops()
        enc = best(lambda: (a.encode(xa), v.encode(xv)))
        m = torch.randn(2048, 2048)
        probe = 2 * 2048**3 / best(lambda: m @ m)
    return {"encode_gflop_per_clip": round(flops / 1e9, 2), "encode_s_per_clip_alone": round(enc, 4),
            "threads": torch.get_num_threads(), "matmul_probe_gflops": round(probe / 1e9, 1),
            "encode_fraction_of_probe": round(flops / enc / probe, 3),
            "encode_bound_clips_per_s_at_probe": round(probe / flops, 2)}


def decode_split(manifest: Path, n: int = 20) -> dict:
    """Per-clip seconds of decoding alone vs decode + align + crop (load_aligned_clip), one process."""
    from vqmae.data.clips import clip_config_for_dataset, load_aligned_clip
    from vqmae.data.manifest import read_manifest
    from vqmae.data.media import load_audio, load_video

    m = read_manifest(manifest)
    cfg = clip_config_for_dataset(manifest)
    paths = [m.media_path(r) for r in m.records[:n]]
    load_aligned_clip(paths[0], cfg)  # warm up
    t = time.perf_counter()
    for p in paths:
        load_video(p, fps=cfg.fps, backend=cfg.backend)
        load_audio(p, sample_rate=cfg.sample_rate, backend=cfg.backend)
    decode = (time.perf_counter() - t) / len(paths)
    t = time.perf_counter()
    for p in paths:
        load_aligned_clip(p, cfg)
    full = (time.perf_counter() - t) / len(paths)
    return {"decode_s_per_clip": round(decode, 4), "face_s_per_clip": round(max(full - decode, 0.0), 4),
            "detect_faces": cfg.detect_faces, "clips_timed": len(paths)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default="", help="existing corpus (default: generate --clips 2-s clips)")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--preset", default="paper")
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-clips", type=int, nargs=2, default=(100, 1000))
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args(argv)
    result: dict = {"benchmark": "tokenize", "preset": args.preset, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.manifest:
            manifest = Path(args.manifest)
        else:
            t = time.perf_counter()
            manifest = make_corpus(tmp / "corpus", args.clips)
            result["corpus_seconds_to_generate"] = round(time.perf_counter() - t, 1)
        toks = save_tokenizers(tmp, args.preset)
        result["split"] = decode_split(manifest)
        result["encode_probe"] = encode_probe(args.preset)
        one = run_job(manifest, toks, tmp / "store1", 1, args.device)
        two = run_job(manifest, toks, tmp / "store2", 2, args.device)
        same = _files(tmp / "store1") == _files(tmp / "store2")
        result.update(one_process=one, two_processes=two, stores_identical=same,
                      speedup_2_vs_1=round(two["clips_per_s"] / one["clips_per_s"], 2),
                      target={"clips_per_s_1_process": 5.0, "speedup_2_vs_1": 1.7})
        # the measured ceiling: encoding alone (both tokenizers, all cores, no decode) in this run;
        # the job's fraction of it says how much decoding/cropping/writing still costs
        ceiling = 1.0 / result["encode_probe"]["encode_s_per_clip_alone"]
        frac = one["clips_per_s"] / ceiling
        result.update(encode_ceiling_clips_per_s=round(ceiling, 2), fraction_of_encode_ceiling=round(frac, 3),
                      meets_target=bool(one["clips_per_s"] >= 5.0 or (ceiling < 5.0 and frac >= 0.85)))
        split = dict(result["split"])
        split.update(prepare_s_per_clip=one["per_clip_s"]["prepare"], encode_s_per_clip=one["per_clip_s"]["encode"],
                     write_s_per_clip=one["per_clip_s"]["write"])
        result["split"] = split
        if not args.skip_memory:
            tiny = save_tokenizers(tmp, "tiny")
            mem = {}
            for n in args.memory_clips:
                from vqmae.data.manifest import ClipRecord, write_manifest

                d = tmp / f"mem{n}"
                recs = [ClipRecord(id=f"m{i:06d}", path=f"none/{i}.mp4", speaker=f"s{i % 50}", label=i % 6)
                        for i in range(n)]
                mpath = write_manifest(d, recs, root=d, name="mem", classes=[str(k) for k in range(6)])
                r = run_job(mpath, tiny, d / "store", 1, args.device,
                            ["--loader", "bench_tokenize:synthetic_clip", "--clips-per-shard", "64"])
                mem[str(n)] = {"peak_rss_mb_main": r["peak_rss_mb_main"], "clips_per_s": r["clips_per_s"]}
            lo, hi = (mem[str(n)] for n in args.memory_clips)
            result["memory"] = {**mem, "growth": round(hi["peak_rss_mb_main"] / lo["peak_rss_mb_main"] - 1, 3),
                                "target_growth": 0.10}
    print(json.dumps(result))
    return result


def _files(root: Path) -> dict[str, bytes]:
    """The store's files (not the lock, nor tokenize_config.json: the run's own settings, which
    name its output folder and process count)."""
    from vqmae.data.token_writer import RUN_CONFIG_NAME

    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (".lock", RUN_CONFIG_NAME)}


if __name__ == "__main__":
    main()
