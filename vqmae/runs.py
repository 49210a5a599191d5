"""Run folders: resolved config, metrics JSONL (+ TensorBoard), a human log, checkpoints.

Layout of a run folder::

    RUN/config.yaml          the resolved config of the run
    RUN/metrics.jsonl        one JSON object per logged step / epoch ({"step", "epoch", "split", ...})
    RUN/train.log            human-readable log
    RUN/tb/                  TensorBoard events (optional)
    RUN/checkpoints/step_00000123/   accelerate ``save_state`` + trainer_state.json (for --resume)
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from vqmae.config import save_config
from vqmae.io import append_jsonl

log = logging.getLogger("vqmae")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of the
    first call: a process that swaps stderr, as test runners do, never logs into a closed one)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Console logging for command-line entry points (idempotent)."""
    root = logging.getLogger("vqmae")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        for old in [h for h in root.handlers if getattr(h, "_vqmae", False)]:
            root.removeHandler(old)
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        h._vqmae = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = False


class RunFolderError(ValueError):
    """The run folder path names something that is not a folder."""


def check_run_folder(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; RunFolderError when it exists and is not a folder."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"out: {path} is a file, not a run folder")
    return path


class Run:
    """A run folder. Only the main process writes (``is_main``); other ranks get a silent Run."""

    def __init__(self, out_dir: str | Path, config: Any = None, is_main: bool = True,
                 tensorboard: bool = True):
        self.dir = check_run_folder(out_dir)
        self.is_main = is_main
        self._tb = None
        self._file_handler: logging.Handler | None = None
        if is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            if config is not None:
                save_config(config, self.dir / "config.yaml")
            fh = logging.FileHandler(self.dir / "train.log")
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(fh)
            self._file_handler = fh
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.dir / "tb"))
                except Exception as e:  # tensorboard is optional
                    log.warning("TensorBoard disabled: %s", e)

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Append one metrics row; numeric values also go to TensorBoard as split/name."""
        if not self.is_main:
            return
        clean = {k: (float(v) if hasattr(v, "item") else v) for k, v in row.items()}
        append_jsonl(self.metrics_path, clean)
        if self._tb is not None:
            step = int(clean.get("step", 0))
            split = clean.get("split", "train")
            for k, v in clean.items():
                if k in ("step", "epoch", "split") or not isinstance(v, (int, float)):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def info(self, msg: str, *args: Any) -> None:
        if self.is_main:
            log.info(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        if self.is_main:
            log.warning(msg, *args)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._file_handler is not None:
            log.removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None
