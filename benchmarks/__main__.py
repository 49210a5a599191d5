"""Run every benchmark script and write ``benchmarks/results/<date>.json``.

    python -m benchmarks                 # all of them but the long ones (ssl: --only ssl)
    python -m benchmarks --only mae,store
    python -m benchmarks --list

Rows: ``epoch`` (a pretraining epoch from disk, discrete vs raw), ``faces`` (``prepare`` face
tracking vs every-frame detection), ``mae``, ``store``, ``tokenize``, ``synth``,
``emotion_information``. Each ``benchmarks/bench_<name>.py`` prints one JSON object (its last line of output that parses
as a JSON object is taken). Targets are ratios measured inside one run (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1_5_15_min": [round(x, 2) for x in os.getloadavg()],  # other jobs: ratios only
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def last_json_object(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:
        obj = json.loads(text)
        return obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        return None


def _accepted(path: Path, args: list[str]) -> list[str]:
    """The extra ``--option [values...]`` this script declares (e.g. only some take --device);
    an option keeps every value up to the next ``--option``."""
    text = path.read_text()
    out: list[str] = []
    i = 0
    while i < len(args):
        opt = args[i]
        j = i + 1
        while j < len(args) and not args[j].startswith("--"):
            j += 1
        if f'"{opt.split("=")[0]}"' in text:
            out += args[i:j]
        i = j
    return out


LONG = {"ssl"}
"""Benchmarks of tens of minutes: run only when named (``--only ssl``)."""


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated benchmark names (bench_<name>.py)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per benchmark")
    ap.add_argument("--out", default="", help="result file (default benchmarks/results/<date>.json)")
    ap.add_argument("args", nargs="*", help="extra arguments passed to every script (e.g. --device cuda)")
    ns = ap.parse_args(argv)
    benches = discover()
    if ns.list:
        print("\n".join(benches))
        return 0
    if ns.only:
        wanted = [w.strip() for w in ns.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in benches]
        if unknown:
            print(f"unknown benchmarks {unknown}; known: {', '.join(benches)}", file=sys.stderr)
            return 2
        benches = {w: benches[w] for w in wanted}
    else:
        benches = {k: v for k, v in benches.items() if k not in LONG}
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine_info(), "benchmarks": {}}
    failed = 0
    for name, path in benches.items():
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, str(path), *_accepted(path, ns.args)], capture_output=True, text=True,
                                  timeout=ns.timeout, cwd=HERE.parent)
            obj = last_json_object(proc.stdout)
            entry = {"wall_s": round(time.time() - t0, 1), "returncode": proc.returncode}
            if proc.returncode == 0 and obj is not None:
                entry["result"] = obj
            else:
                failed += 1
                entry["error"] = (proc.stderr or proc.stdout)[-2000:]
        except subprocess.TimeoutExpired:
            failed += 1
            entry = {"wall_s": round(time.time() - t0, 1), "error": f"timed out after {ns.timeout}s"}
        entry["load_avg_after"] = round(os.getloadavg()[0], 2)
        results["benchmarks"][name] = entry
        print(json.dumps({name: entry.get("result", entry.get("error"))})[:2000], flush=True)
    out = Path(ns.out) if ns.out else HERE / "results" / f"{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"[benchmarks] wrote {out} ({len(benches) - failed} ok, {failed} failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
