"""``vqmae synth``: generate the embedded synthetic audiovisual corpus.

    vqmae synth --preset demo --out data/synth-demo [--seed 0] [--speakers 12] [--workers 2]
    vqmae synth --preset pretrain --out data/synth-pretrain --clips 2000
    vqmae synth --preset demo --out data/ravdess-like --layout ravdess

Writes mp4 files (H.264 25 fps face-centred frames + AAC audio), ``manifest.jsonl``,
``dataset.json`` and ``DATASHEET.md``. See docs/DATA.md.
"""

from __future__ import annotations

import json

from vqmae.pipelines.common import UserError, stage_main
from vqmae.synth.corpus import SynthConfig, generate_corpus

DESCRIPTION = """Generate the synthetic audiovisual emotional-speech corpus (the default dataset).
Presets: tiny (12 labelled clips of 1-2 s, for tests), demo (labelled: speakers x 6 emotions x
2 intensities x 2 sentences, 2-4 s clips), pretrain (unlabelled clips of other speakers; --clips N).
--layout ravdess|crema-d writes the same clips under those datasets' file naming."""


def run(cfg: SynthConfig) -> dict:
    """Generate the corpus; prints and returns the summary."""
    try:
        summary = generate_corpus(cfg)
    except (ValueError, FileExistsError) as e:
        raise UserError(str(e)) from e
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    return stage_main("synth", DESCRIPTION, SynthConfig, lambda c: (run(c), 0)[1], argv)


if __name__ == "__main__":
    raise SystemExit(main())
