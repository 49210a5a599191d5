"""``vqmae push``: upload a model folder to the Hugging Face Hub (one commit).

    vqmae push runs/demo/pretrain/model my-org/vqmae-av-demo
    vqmae push OUT/finetune-av/fold_0/model my-org/vqmae-emotion --revision v1 --private
    vqmae push DIR REPO_ID --token hf_xxx --commit_message "first upload"

The folder must be a vqmae model folder (``config.json`` + ``model.safetensors``; pickles are
refused) and gets a ``README.md`` model card if it has none. The tokenizers a model records are
copied into it first (``tokenizers/<modality>/``; ``--no-bundle-tokenizers`` to skip) and go
with it, so the downloaded model runs from media. The repo (and the ``--revision`` branch) is created if needed.
The token defaults to ``HF_TOKEN`` or the one saved by ``hf auth login``. Load it back with
``load_pretrained("REPO_ID")`` (or ``from_pretrained``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from vqmae.config import setting
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import log


@dataclass
class PushConfig:
    """Settings of ``vqmae push`` (the folder and repo id may be given as plain arguments)."""

    folder: str = setting("", help="model folder to upload (config.json + model.safetensors)")
    repo_id: str = setting("", help="hub repo id, org/name (created if missing)")
    revision: str = setting("", help="branch to commit to ('' = main; created if missing)")
    private: bool = setting(False, help="create the repo private (an existing repo keeps its visibility)")
    token: str = setting("", help="hub token ('' = HF_TOKEN or `hf auth login`)")
    commit_message: str = setting("", help="commit message ('' = 'Upload <architecture> model ...')")
    create_pr: bool = setting(False, help="open a pull request instead of committing to the branch")
    bundle_tokenizers: bool = setting(True, help="first copy the tokenizers the model records into the folder "
                                      "(tokenizers/<modality>/), so it runs from media once downloaded")


def run(cfg: PushConfig) -> int:
    from vqmae.checkpoint import ModelFolderError
    from vqmae.hub import is_hub_id, push_folder

    if not cfg.folder or not cfg.repo_id:
        raise UserError("give the model folder and the repo id: vqmae push DIR ORG/NAME")
    if not is_hub_id(cfg.repo_id):
        raise UserError(f"repo id '{cfg.repo_id}': expected org/name (letters, digits, '-', '_', '.')")
    try:
        info = push_folder(cfg.folder, cfg.repo_id, revision=cfg.revision or None,
                           private=cfg.private or None, token=cfg.token or None,
                           commit_message=cfg.commit_message or None, create_pr=cfg.create_pr,
                           bundle=cfg.bundle_tokenizers)
    except ModelFolderError as e:
        raise UserError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - hub errors (auth, network) end as one line
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        if isinstance(e, (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError)):
            first = (str(e).strip().splitlines() or [""])[0]
            raise UserError(f"pushing {cfg.folder} to {cfg.repo_id} failed: {type(e).__name__}: {first}") from None
        raise
    url = getattr(info, "pr_url", None) or getattr(info, "commit_url", "")
    log.info("push: %s -> %s (%s)", cfg.folder, cfg.repo_id, url)
    print(url)
    return 0


def split_positional(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``DIR REPO_ID`` given as plain arguments -> ``folder``/``repo_id``; dashes in option names
    (``--create-pr``) -> underscores."""
    names = {f.name for f in dataclasses.fields(PushConfig)}
    settings, plain = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            neg = key.startswith("no-")
            key = ("no-" if neg else "") + key[3 * neg:].replace("-", "_")
            settings.append(f"--{key}{eq}{value}")
            if not eq and key in names and key not in ("private", "create_pr", "bundle_tokenizers") \
                    and i + 1 < len(argv):
                settings.append(argv[i + 1])
                i += 1
        elif "=" in a and a.split("=", 1)[0] in names:
            settings.append(a)
        else:
            plain.append(a)
        i += 1
    if len(plain) > 2:
        raise UserError(f"unexpected arguments {plain[2:]}: vqmae push DIR ORG/NAME [options]")
    return settings, dict(zip(("folder", "repo_id"), plain))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings, base = split_positional(argv)
    except UserError as e:
        print(f"vqmae push: error: {e}", file=sys.stderr)
        return 2
    return stage_main("push", __doc__ or "", PushConfig, run, settings, base=base or None)


if __name__ == "__main__":
    raise SystemExit(main())
