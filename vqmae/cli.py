"""The ``vqmae`` command: one subcommand per stage, each a thin wrapper over
``vqmae.pipelines.<stage>.main(argv)`` (imported only when used, so ``--help`` is instant).

Every training stage also runs as ``accelerate launch -m vqmae.pipelines.<stage> ...``.
"""

from __future__ import annotations

import importlib
import sys

from vqmae import __version__

# name -> (module, one-line description). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("vqmae.pipelines.synth", "generate the embedded synthetic audiovisual corpus (mp4 + manifest)"),
    "prepare": ("vqmae.pipelines.prepare", "index a dataset folder: manifest.jsonl, face crops, folds, errors"),
    "train-tokenizer": ("vqmae.pipelines.train_tokenizer", "train the audio or visual VQ-VAE tokenizer"),
    "tokenize": ("vqmae.pipelines.tokenize", "pre-tokenize a dataset into a sharded token store"),
    "tokens": ("vqmae.pipelines.tokens", "inspect or verify a token store (info | verify)"),
    "pretrain": ("vqmae.pipelines.pretrain", "pretrain VQ-MAE-AV on a token store"),
    "pretrain-vssl": ("vqmae.pipelines.pretrain_vssl", "visually guided SSL of an audio encoder (talking face / audio pretext / both)"),
    "reconstruct": ("vqmae.pipelines.reconstruct", "mask a clip, predict its tokens, decode and plot"),
    "finetune": ("vqmae.pipelines.finetune", "fine-tune and evaluate classifiers over speaker-independent folds"),
    "evaluate": ("vqmae.pipelines.evaluate", "evaluate a fine-tuned model on a token store"),
    "predict": ("vqmae.pipelines.predict", "class probabilities (and affect) for media files, as JSON"),
    "animate": ("vqmae.pipelines.animate", "animate a still face with speech (a pretrain-vssl model) into an mp4"),
    "demo": ("vqmae.pipelines.demo", "the main job: every stage end to end on the embedded corpus"),
    "run": ("vqmae.pipelines.demo", "the same pipeline on a real dataset: vqmae run --config configs/X.yaml"),
    "report": ("vqmae.pipelines.report", "rebuild report.html / report.md of a run folder"),
    "ladder": ("vqmae.pipelines.ladder", "how much emotion information each stage of a run folder keeps (linear probes)"),
    "push": ("vqmae.pipelines.push", "upload a model folder to the Hugging Face Hub (load it back by its id)"),
}

USAGE = """usage: vqmae [--version] [--help] <command> [options]

Self-supervised audiovisual speech representation learning (VQ-VAE tokenizers, VQ-MAE-AV).

commands:
{commands}

Each command takes --config FILE.yaml and key=value / --key value overrides;
`vqmae <command> --help` lists its settings. Docs: docs/README.md
"""


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"vqmae {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"vqmae: unknown command '{name}'.{hint} See `vqmae --help`.", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(f"vqmae {name}: this stage is not available in vqmae {__version__} yet.", file=sys.stderr)
            return 3
        raise
    if name == "run":
        return int(module.main(["--mode=run", *rest]) or 0)
    return int(module.main(rest) or 0)


def entry() -> int:
    """The console script: ``main`` that exits quietly when its output pipe closes early
    (``vqmae pretrain --help | head``)."""
    try:
        return main()
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(entry())
