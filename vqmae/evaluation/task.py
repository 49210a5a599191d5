"""What a fine-tuned model predicts, inferred from a token store's labels: class logits
(emotion, word), continuous arousal/valence targets, or both."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqmae.data.token_store import TARGET_NAMES, TokenStore


@dataclass
class Task:
    """What the model predicts: ``num_classes`` class logits, then ``num_targets`` continuous values."""

    kind: str
    classes: list[str]
    target_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.kind in ("classify", "both") else 0

    @property
    def num_targets(self) -> int:
        return len(self.target_names) if self.kind in ("regress", "both") else 0

    @property
    def headline(self) -> str:
        """The metric the results lead with."""
        return "ccc" if self.kind == "regress" else "uar"

    def selection_key(self, requested: str = "auto") -> str:
        if requested != "auto":
            return requested
        return "ccc" if self.kind == "regress" else "selection"

    def uses(self, clip: Any) -> bool:
        """Whether a clip (``StoredClip``) has what this task trains on."""
        has_label = clip.label is not None and clip.label >= 0
        has_target = any(finite(clip.targets.get(t)) for t in self.target_names)
        return self._usable(has_label, has_target)

    def usable(self, store: TokenStore) -> np.ndarray:
        """bool ``(num_clips,)``: the store's clips that have what this task trains on."""
        has_label = store.labels >= 0
        has_target = np.isfinite(store.targets[:, :len(self.target_names)]).any(axis=1) \
            if self.target_names else np.zeros(len(store), dtype=bool)
        return self._usable(has_label, has_target)

    def _usable(self, has_label: Any, has_target: Any) -> Any:
        if self.kind == "classify":
            return has_label
        if self.kind == "regress":
            return has_target
        return has_label | has_target


def finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def infer_task(store: TokenStore, requested: str = "auto") -> Task:
    """The task a store supports (``requested`` checked against its labels)."""
    classes = list(store.classes)
    labelled = bool((store.labels >= 0).any())
    targets = [t for k, t in enumerate(TARGET_NAMES) if np.isfinite(store.targets[:, k]).any()]
    if labelled and not classes:
        classes = [str(i) for i in range(int(store.labels.max()) + 1)]
    if requested == "auto":
        kind = "both" if labelled and targets else "classify" if labelled else "regress" if targets else ""
        if not kind:
            raise ValueError(f"{store.root}: no clip has a class label or arousal/valence targets; "
                             "nothing to fine-tune on")
    else:
        kind = requested
        if kind in ("classify", "both") and not labelled:
            raise ValueError(f"{store.root}: task '{kind}' needs class labels, and no clip has one")
        if kind in ("regress", "both") and not targets:
            raise ValueError(f"{store.root}: task '{kind}' needs arousal/valence targets, and no clip has them")
    return Task(kind, classes if kind != "regress" else [], list(TARGET_NAMES) if kind != "classify" else [])
