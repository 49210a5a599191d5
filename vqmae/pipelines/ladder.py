"""``vqmae ladder RUN_DIR``: how much emotion information each stage of a run keeps.

For a run folder (``vqmae demo`` / ``vqmae run`` layout, or any folder whose ``stages.json``
names the token store): a speaker-grouped linear probe on media features, tokenizer decodings,
code histograms, an untrained and the frozen pretrained encoder, next to the fine-tuned models'
held-out accuracy; writes ``RUN/ladder/ladder.{json,md,png}`` (shown by ``vqmae report``).

Its settings: ``--no-decodings`` (skip decoding every clip), ``--max-clips N`` (a random subset),
``--out DIR``, ``--seed N``. The job is :mod:`vqmae.evaluation.ladder`.
"""

from __future__ import annotations

import sys

from vqmae.errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: vqmae ladder RUN_DIR [--no-decodings] [--max-clips N] [--out DIR] [--seed N]\n\n"
              + (__doc__ or ""))
        return 0 if argv else 2
    opts = {"decodings": True, "max_clips": 0, "out": None, "seed": 0}
    run, rest = argv[0], argv[1:]
    try:
        while rest:
            flag = rest.pop(0)
            key = flag.lstrip("-").replace("-", "_").split("=")[0]
            if key == "no_decodings":
                opts["decodings"] = False
            elif key in ("max_clips", "seed", "out"):
                value = flag.split("=", 1)[1] if "=" in flag else rest.pop(0)
                opts[key] = value if key == "out" else int(value)
            else:
                raise UserError(f"unknown option {flag} (see vqmae ladder --help)")
        from vqmae.evaluation.ladder import ladder_markdown, run_ladder

        data = run_ladder(run, **opts)
    except (UserError, ValueError, IndexError) as e:
        print(f"vqmae ladder: error: {e or 'an option needs a value'}", file=sys.stderr)
        return 2
    print(ladder_markdown(data))
    print(f"wrote {opts['out'] or run + '/ladder'}/ladder.json, ladder.md, ladder.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
