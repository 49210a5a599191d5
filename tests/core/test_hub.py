"""Hub sharing without network: a hub cache laid out the way huggingface_hub writes it, loaded
with HF_HUB_OFFLINE=1; the upload path through huggingface_hub's real HfApi with its HTTP client
(httpx2) given a MockTransport that plays the hub; tokenizer bundling and resolution."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.utils._http import hf_request_event_hook
from safetensors.torch import load_file
from support.hub_cache import COMMIT, git_blob_sha1, write_hub_cache
from support.tokenize_fixture import save_tokenizers
from torch import nn

from vqmae.checkpoint import ModelFolderError, PretrainedModel, load_pretrained, register_model
from vqmae.hub import (
    HubError,
    bundle_tokenizers,
    is_hub_id,
    make_self_contained,
    push_folder,
    resolve_model_folder,
    resolve_tokenizer_folder,
)


@dataclass
class HubToyConfig:
    width: int = 5


@register_model("test-hub-toy")
class HubToy(PretrainedModel):
    config_class = HubToyConfig

    def __init__(self, config: HubToyConfig):
        super().__init__(config)
        self.lin = nn.Linear(config.width, 3)


def tiny_classifier(seed: int = 0):
    from vqmae.mae import mae_preset
    from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier

    torch.manual_seed(seed)
    model = EmotionClassifier(ClassifierConfig(encoder=mae_preset("tiny"), num_classes=3,
                                               classes=["angry", "happy", "sad"]))
    model.info = {"task": {"kind": "classify", "classes": ["angry", "happy", "sad"], "target_names": []}}
    return model


LOAD_SCRIPT = """
import json, sys
from safetensors.torch import save_file
from vqmae.checkpoint import load_pretrained
from vqmae.config import config_to_dict
name, out = sys.argv[1], sys.argv[2]
rev = sys.argv[3] if len(sys.argv) > 3 else None
m = load_pretrained(name, revision=rev)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, out)
print(json.dumps({"architecture": m.architecture, "config": config_to_dict(m.config),
                  "fingerprint": m.fingerprint(), "hub_id": m.hub_id, "path": m.pretrained_path}))
"""


def run_fresh(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter: nothing of vqmae imported but what the script imports."""
    return subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=cwd, timeout=300)


def assert_same_model(saved: nn.Module, state_file: Path, report: dict) -> None:
    from vqmae.config import config_to_dict

    loaded = load_file(str(state_file))
    want = saved.state_dict()
    assert sorted(loaded) == sorted(want)
    for k, v in want.items():
        assert torch.equal(loaded[k], v), k
    assert report["config"] == json.loads(json.dumps(config_to_dict(saved.config)))
    assert report["fingerprint"] == saved.fingerprint()


# ----------------------------------------------------------------------------- hub cache


def test_classifier_loads_by_hub_id_offline_from_the_cache(tmp_path):
    model = tiny_classifier()
    folder = model.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "hub"
    write_hub_cache(cache, "my-org/emotion", folder)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    r = run_fresh(["my-org/emotion", str(tmp_path / "a.safetensors")], env, tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["architecture"] == "vqmae-classifier" and report["hub_id"] == "my-org/emotion"
    assert Path(report["path"]).parts[-2:] == ("snapshots", COMMIT)
    assert_same_model(model, tmp_path / "a.safetensors", report)
    # a pinned commit works too
    r = run_fresh(["my-org/emotion", str(tmp_path / "b.safetensors"), COMMIT], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_model(model, tmp_path / "b.safetensors", json.loads(r.stdout.strip().splitlines()[-1]))


def test_classifier_folder_loads_in_a_fresh_interpreter_without_extra_imports(tmp_path):
    """Was: "unknown architecture 'vqmae-classifier'" unless vqmae.mae.classifier was imported."""
    model = tiny_classifier(seed=1)
    model.save_pretrained(tmp_path / "clf")
    r = run_fresh([str(tmp_path / "clf"), str(tmp_path / "s.safetensors")], {}, tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["architecture"] == "vqmae-classifier" and report["hub_id"] == ""
    assert_same_model(model, tmp_path / "s.safetensors", report)


def test_every_architecture_module_is_found():
    from vqmae.checkpoint import _import_all_models, model_modules, registered_models

    mods = model_modules()
    for m in ("vqmae.tokenizers.audio", "vqmae.tokenizers.visual", "vqmae.mae.model", "vqmae.mae.raw_mae",
              "vqmae.mae.classifier"):
        assert m in mods
    assert _import_all_models() == {}
    assert {"audio-vqvae", "visual-vqvae", "vqmae-av", "raw-mae", "vqmae-classifier"} <= set(registered_models())


def test_from_pretrained_in_process_with_cache_dir_and_revision(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(0)
    model = HubToy(HubToyConfig(width=4))
    folder = model.save_pretrained(tmp_path / "saved")
    write_hub_cache(tmp_path / "hub", "org/toy", folder)
    write_hub_cache(tmp_path / "hub", "org/toy", folder, commit="f" * 40, ref="v1")
    loaded = HubToy.from_pretrained("org/toy", revision="v1", cache_dir=tmp_path / "hub")
    assert loaded.fingerprint() == model.fingerprint() and loaded.hub_id == "org/toy"
    assert Path(loaded.pretrained_path).name == "f" * 40
    again = load_pretrained("org/toy", cache_dir=tmp_path / "hub")
    assert isinstance(again, HubToy) and Path(again.pretrained_path).name == COMMIT


def test_hub_id_not_cached_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match=r"'org/missing'.*not in the hub cache.*HF_HUB_OFFLINE"):
        load_pretrained("org/missing", cache_dir=tmp_path / "empty")
    assert issubclass(HubError, ModelFolderError)  # stages turn it into a one-line error, exit 2
    with pytest.raises(ModelFolderError, match="revisions apply to hub ids"):
        resolve_model_folder(tmp_path, revision="v1")


def test_pickles_in_the_cache_are_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pytorch_model.bin").write_bytes(b"not really a pickle")
    write_hub_cache(tmp_path / "hub", "org/pickled", repo)
    with pytest.raises(ModelFolderError, match="pickle checkpoints .* refused"):
        load_pretrained("org/pickled", cache_dir=tmp_path / "hub")


def test_is_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("org/name") and is_hub_id("my-org/vqmae.av_1")
    assert not is_hub_id("name") and not is_hub_id("a/b/c") and not is_hub_id("org/a--b")
    (tmp_path / "runs" / "model").mkdir(parents=True)
    assert not is_hub_id("runs/model")  # an existing local folder wins
    assert is_hub_id(Path("org/name"))  # load_tokenizer passes Paths


# ----------------------------------------------------------------------- upload (HTTP layer)


class FakeHub:
    """The hub's HTTP API as far as create_repo / create_branch / upload_folder and
    snapshot_download use it (committed files are served back)."""

    SHA = "fedcba9876543210fedcba9876543210fedcba98"

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.branches: list[str] = []
        self.created: list[dict] = []
        self.validated: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if request.method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            self.created.append(body)
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{body.get('organization')}/"
                                                     f"{body['name']}"})
        if request.method == "POST" and path == "/api/validate-yaml":  # the hub checks README metadata
            content = json.loads(request.content)["content"]
            self.validated.append(content)
            ok = content.startswith("---\n") and "library_name: vqmae" in content
            return httpx2.Response(200 if ok else 400, json={"warnings": []} if ok else {"error": "bad yaml"})
        if request.method == "POST" and "/branch/" in path:
            self.branches.append(path.rsplit("/branch/", 1)[1])
            return httpx2.Response(200, json={})
        if request.method == "POST" and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if request.method == "POST" and "/commit/" in path:
            lines = [json.loads(x) for x in request.content.decode().splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                     for x in lines if x["key"] == "file"}
            self.commits.append({"path": path, "header": header, "files": files,
                                 "auth": request.headers.get("authorization", "")})
            repo = path.split("/api/models/", 1)[1].rsplit("/commit/", 1)[0]
            self.repos.setdefault(repo, {}).update(files)
            return httpx2.Response(200, json={"commitUrl": "https://huggingface.co/org/m/commit/abc",
                                              "commitOid": "a" * 40, "pullRequestUrl": None})
        if request.method == "GET" and path.startswith("/api/models/"):  # repo_info, list_repo_tree
            rest = path[len("/api/models/"):]
            for repo, files in self.repos.items():
                if rest.startswith(repo + "/revision/"):
                    return httpx2.Response(200, json={"id": repo, "sha": self.SHA,
                                                      "siblings": [{"rfilename": f} for f in files]})
                if rest.startswith(repo + "/tree/"):
                    return httpx2.Response(200, json=[{"type": "file", "path": f, "size": len(d),
                                                       "oid": git_blob_sha1(d)} for f, d in files.items()])
        if request.method in ("HEAD", "GET") and "/resolve/" in path:  # file downloads
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            data = self.repos.get(repo, {}).get(rest.partition("/")[2])
            if data is not None:
                headers = {"X-Repo-Commit": self.SHA, "ETag": f'"{git_blob_sha1(data)}"',
                           "Content-Length": str(len(data))}
                return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)
        return httpx2.Response(404, json={"error": f"unexpected {request.method} {path}"})


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(
        transport=httpx2.MockTransport(hub), event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True))
    yield hub
    from huggingface_hub.utils._http import default_client_factory

    huggingface_hub.set_client_factory(default_client_factory)


def test_push_commits_the_model_folder_through_huggingface_hub(tmp_path, fake_hub):
    torch.manual_seed(0)
    folder = HubToy(HubToyConfig()).save_pretrained(tmp_path / "m")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk").write_text("x")
    info = push_folder(folder, "org/m", revision="v1", private=True, token="hf_test_token")
    assert info.oid == "a" * 40
    assert fake_hub.created and fake_hub.created[0].get("visibility", fake_hub.created[0].get("private")) in (
        "private", True)
    assert fake_hub.branches == ["v1"]
    (commit,) = fake_hub.commits
    assert commit["path"] == "/api/models/org/m/commit/v1"
    assert commit["auth"] == "Bearer hf_test_token"
    assert sorted(commit["files"]) == ["README.md", "config.json", "model.safetensors"]
    for name, data in commit["files"].items():
        assert data == (folder / name).read_bytes(), name
    assert "test-hub-toy" in commit["header"]["summary"]
    assert fake_hub.validated == [(folder / "README.md").read_text()]


def test_push_cli_and_refusals(tmp_path, fake_hub, capsys):
    from vqmae.cli import main

    torch.manual_seed(0)
    folder = HubToy(HubToyConfig()).save_pretrained(tmp_path / "m")
    (folder / "README.md").unlink()  # push writes the card when missing
    assert main(["push", str(folder), "org/m", "--token", "hf_x", "--commit-message", "hello"]) == 0
    (commit,) = fake_hub.commits
    assert commit["header"]["summary"] == "hello" and "README.md" in commit["files"]
    assert commit["path"] == "/api/models/org/m/commit/main"
    assert main(["push", str(tmp_path / "nope"), "org/m"]) == 2
    (folder / "old.pt").write_bytes(b"x")
    assert main(["push", str(folder), "org/m", "--token", "hf_x"]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["push", "--help"]) == 0
    assert len(fake_hub.commits) == 1


def test_push_bundles_recorded_tokenizers_first(tmp_path, fake_hub, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, fps = _classifier_with_tokenizers(tmp_path, tmp_path)
    folder = model.save_pretrained(tmp_path / "clf")  # tokenizers recorded, not inside
    push_folder(folder, "org/clf", token="hf_x")
    files = fake_hub.commits[0]["files"]
    assert "tokenizers/audio/model.safetensors" in files and "tokenizers/visual/config.json" in files
    sent = json.loads(files["config.json"])["info"]["tokenizers"]
    assert sent["audio"]["bundled"] == "tokenizers/audio" and sent["audio"]["fingerprint"] == fps["audio"]
    from vqmae.cli import main

    other = model.save_pretrained(tmp_path / "clf2")
    assert main(["push", str(other), "org/clf2", "--token", "hf_x", "--no-bundle-tokenizers"]) == 0
    assert not any(f.startswith("tokenizers/") for f in fake_hub.commits[1]["files"])


def test_push_offline_is_one_line_error(tmp_path, fake_hub, monkeypatch, capsys):
    from vqmae.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = HubToy(HubToyConfig()).save_pretrained(tmp_path / "m")
    assert main(["push", str(folder), "org/m", "--token", "hf_x"]) == 2
    err = capsys.readouterr().err
    assert "org/m" in err and "Traceback" not in err and not fake_hub.requests


# ------------------------------------------------------------------------ self-contained


def _classifier_with_tokenizers(tmp_path: Path, cwd: Path):
    """A classifier whose info records its tokenizers relative to ``cwd`` (as finetune does)."""
    a, v = save_tokenizers(cwd / "runs")
    model = tiny_classifier()
    fps = {m: json.loads((p / "config.json").read_text())["fingerprint"] for m, p in (("audio", a), ("visual", v))}
    model.info["tokenizers"] = {m: {"dir": os.path.relpath(p, cwd), "fingerprint": fps[m], "frames_per_second": 25.0}
                                for m, p in (("audio", a), ("visual", v))}
    return model, fps


def test_bundled_tokenizers_resolve_from_any_directory(tmp_path, monkeypatch):
    train_dir, elsewhere = tmp_path / "train", tmp_path / "elsewhere"
    train_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(train_dir)
    model, fps = _classifier_with_tokenizers(tmp_path, train_dir)
    folder = tmp_path / "out" / "model"
    model.info["tokenizers"] = bundle_tokenizers(folder, model.info["tokenizers"])
    model.save_pretrained(folder)
    meta = json.loads((folder / "config.json").read_text())
    recs = meta["info"]["tokenizers"]
    assert recs["audio"]["bundled"] == "tokenizers/audio" and recs["audio"]["fingerprint"] == fps["audio"]
    assert recs["audio"]["dir"] == model.info["tokenizers"]["audio"]["dir"] != ""  # kept for old readers
    assert (folder / "tokenizers" / "visual" / "model.safetensors").is_file()
    moved = tmp_path / "moved"
    os.rename(tmp_path / "out", moved)
    shutil.rmtree(train_dir / "runs")  # the original tokenizer folders are gone
    monkeypatch.chdir(elsewhere)
    for m in ("audio", "visual"):
        p = resolve_tokenizer_folder(moved / "model", m, recs[m])
        assert p == moved / "model" / "tokenizers" / m
    card = (moved / "model" / "README.md").read_text()
    assert "tokenizers/audio" in card and fps["visual"] in card


def test_old_relative_records_still_resolve_and_can_be_made_self_contained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, fps = _classifier_with_tokenizers(tmp_path, tmp_path)
    folder = model.save_pretrained(tmp_path / "ft" / "fold_0" / "model")
    rec = json.loads((folder / "config.json").read_text())["info"]["tokenizers"]["audio"]
    monkeypatch.chdir(folder)  # elsewhere: the relative path is found through the folder's parents
    assert resolve_tokenizer_folder(folder, "audio", rec) == tmp_path / rec["dir"]
    # a folder with another tokenizer at the recorded relative path (the visual one) is passed over
    (tmp_path / "elsewhere" / "runs").mkdir(parents=True)
    shutil.copytree(tmp_path / "runs" / "visual_tok0", tmp_path / "elsewhere" / rec["dir"])
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resolve_tokenizer_folder(folder, "audio", rec) == tmp_path / rec["dir"]
    meta = make_self_contained(folder, base_dir=tmp_path)
    assert meta["info"]["tokenizers"]["audio"]["bundled"] == "tokenizers/audio"
    assert meta["info"]["tokenizers"]["audio"]["source_dir"] == str((tmp_path / rec["dir"]).resolve())
    assert load_pretrained(folder).fingerprint() == model.fingerprint()  # weights untouched
    again = make_self_contained(folder)  # idempotent, from any directory
    assert again["info"]["tokenizers"] == meta["info"]["tokenizers"]
    with pytest.raises(ModelFolderError, match="not the one"):
        resolve_tokenizer_folder(folder, "audio", {**rec, "fingerprint": "0" * 64})
    with pytest.raises(ModelFolderError, match="not the one"):
        resolve_tokenizer_folder(folder, "audio", rec, override=tmp_path / "runs" / "visual_tok0")
    with pytest.raises(ModelFolderError, match="--audio-tokenizer"):
        resolve_tokenizer_folder(tmp_path / "x", "audio", {"dir": "nowhere/tok"})
    kept = bundle_tokenizers(tmp_path / "y", {"audio": {"dir": "no/such/tok", "fingerprint": "e"}}, strict=False)
    assert kept == {"audio": {"dir": "no/such/tok", "fingerprint": "e"}}
    with pytest.raises(ModelFolderError, match="not found; cannot bundle"):
        bundle_tokenizers(tmp_path / "y", {"audio": {"dir": "no/such/tok"}})
    with pytest.raises(ModelFolderError, match="not the one recorded"):
        bundle_tokenizers(tmp_path / "z", {"audio": {"dir": "runs/visual_tok0", "fingerprint": fps["audio"]}},
                          base_dir=tmp_path)
    assert bundle_tokenizers(tmp_path / "y", {"audio": {"dir": "", "fingerprint": "e"}}) == {
        "audio": {"dir": "", "fingerprint": "e"}}  # nothing recorded: nothing to bundle


def test_tokenizers_from_the_hub_are_bundled_with_hub_id(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    a, _ = save_tokenizers(tmp_path / "src")
    write_hub_cache(tmp_path / "hub", "org/audio-tok", a)
    fp = json.loads((a / "config.json").read_text())["fingerprint"]
    recs = bundle_tokenizers(tmp_path / "model", {"audio": {"dir": "org/audio-tok", "fingerprint": fp}})
    assert recs["audio"]["hub_id"] == "org/audio-tok" and recs["audio"]["revision"] == COMMIT
    assert recs["audio"]["bundled"] == "tokenizers/audio" and "source_dir" not in recs["audio"]
    # resolution by hub id when the bundled copy is missing
    rec = {"hub_id": "org/audio-tok", "revision": COMMIT, "fingerprint": fp, "bundled": "tokenizers/audio"}
    p = resolve_tokenizer_folder(tmp_path / "other_model", "audio", rec)
    assert p.parts[-2:] == ("snapshots", COMMIT)
    from vqmae.tokenizers import load_tokenizer

    assert load_tokenizer("org/audio-tok").fingerprint() == fp  # tokenizers load by hub id too


def test_pretrained_model_made_self_contained_keeps_store_provenance(tmp_path, monkeypatch):
    from vqmae.hub import store_tokenizer_record, tokenizer_records
    from vqmae.mae import VQMAEAV, mae_preset

    monkeypatch.chdir(tmp_path)
    a, v = save_tokenizers(tmp_path / "runs")
    fp = {m: json.loads((p / "config.json").read_text())["fingerprint"] for m, p in (("audio", a), ("visual", v))}
    prov = {"audio": {"fingerprint": fp["audio"], "tokenizer_dir": "runs/audio_tok0", "frames_per_second": 50.0},
            "visual": {"fingerprint": fp["visual"], "tokenizer_dir": "runs/visual_tok0", "frames_per_second": 25.0,
                       "tokenizer_hub_id": "org/vis", "tokenizer_revision": COMMIT}}
    assert store_tokenizer_record(prov["visual"])["hub_id"] == "org/vis"
    folder = VQMAEAV(mae_preset("tiny")).save_pretrained(tmp_path / "pre", metadata={
        "token_store": {"path": "tokens", "provenance": prov}})
    meta = make_self_contained(folder)
    new = meta["token_store"]["provenance"]
    assert new["audio"]["bundled"] == "tokenizers/audio" and new["audio"]["fingerprint"] == fp["audio"]
    assert new["audio"]["tokenizer_dir"] == "runs/audio_tok0"  # unchanged: reconstruct etc. read it
    assert new["visual"]["hub_id"] == "org/vis" and new["visual"]["revision"] == COMMIT
    recs = tokenizer_records(meta)
    assert recs["visual"]["hub_id"] == "org/vis" and recs["audio"]["bundled"] == "tokenizers/audio"
    assert resolve_tokenizer_folder(folder, "visual", recs["visual"]) == folder / "tokenizers" / "visual"
    # hard links (or copies) of the files, not the originals
    assert (folder / "tokenizers" / "audio" / "model.safetensors").read_bytes() == (a / "model.safetensors").read_bytes()
    assert "tokenizers/visual" in (folder / "README.md").read_text()


TOKENIZER_SCRIPT = """
import json, sys
from vqmae.checkpoint import load_pretrained, read_model_config
from vqmae.hub import resolve_tokenizer_folder
from vqmae.tokenizers import load_tokenizer
m = load_pretrained(sys.argv[1])
recs = read_model_config(m.pretrained_path)["info"]["tokenizers"]
fps = {k: load_tokenizer(resolve_tokenizer_folder(m.pretrained_path, k, r)).fingerprint() for k, r in recs.items()}
print(json.dumps({"fingerprint": m.fingerprint(), "tokenizers": fps}))
"""


def test_push_download_and_offline_load_round_trip(tmp_path, fake_hub, monkeypatch):
    """vqmae push -> snapshot_download writes the cache (huggingface_hub's own layout) ->
    a fresh interpreter with HF_HUB_OFFLINE=1, in another directory, loads the classifier and
    its bundled tokenizers by hub id."""
    import support.tokenize_fixture  # noqa: F401 - the fake tokenizer architectures, in this process

    monkeypatch.chdir(tmp_path)
    model, fps = _classifier_with_tokenizers(tmp_path, tmp_path)
    folder = tmp_path / "clf"
    model.info["tokenizers"] = bundle_tokenizers(folder, model.info["tokenizers"])
    model.save_pretrained(folder)
    push_folder(folder, "org/emotion", token="hf_x")
    assert set(fake_hub.repos["org/emotion"]) == {
        "config.json", "model.safetensors", "README.md", *[f"tokenizers/{m}/{f}" for m in ("audio", "visual")
                                                          for f in ("config.json", "model.safetensors", "README.md")]}
    cache = tmp_path / "hub"
    snap = resolve_model_folder("org/emotion", cache_dir=cache, token="hf_x")  # online (mocked HTTP)
    assert snap.parts[-2:] == ("snapshots", FakeHub.SHA)
    assert (cache / "models--org--emotion" / "refs" / "main").read_text() == FakeHub.SHA
    assert (snap / "model.safetensors").is_symlink()  # blobs + symlinks, as huggingface_hub caches
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = subprocess.run([sys.executable, "-c", "import support.tokenize_fixture\n" + TOKENIZER_SCRIPT,
                        "org/emotion"], capture_output=True, text=True, cwd=other, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"fingerprint": model.fingerprint(), "tokenizers": fps}
