"""``vqmae report RUN_DIR``: (re)build ``report.html`` (self-contained) and ``report.md`` of a run.

Reads what the stages left in the run folder (``vqmae demo`` / ``vqmae run`` layout): the corpus
and manifest, folds, tokenizer quality and images, the token store summary, pretraining curves
and reconstructions, fine-tuning results, confusion matrices, label-efficiency and noise plots.
Sections whose stage has not run are left out. A verdict on the method's claims comes first; the
information ladder (``vqmae ladder``) is computed when missing or stale (``--no-ladder``: not).
The job itself is :mod:`vqmae.run_report`.
"""

from __future__ import annotations

import sys

from vqmae.run_report import build_report

__all__ = ["build_report", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: vqmae report RUN_DIR [--no-ladder]\n\n" + (__doc__ or ""))
        return 0 if argv else 2
    try:
        md, html = build_report(argv[0], ladder="--no-ladder" not in argv[1:])
    except FileNotFoundError as e:
        print(f"vqmae report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {html} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
