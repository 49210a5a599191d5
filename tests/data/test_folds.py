"""Speaker-independent folds: disjoint splits, every speaker tested once, seeded, reused."""

from __future__ import annotations

import pytest

from vqmae.data.folds import (
    Fold,
    FoldsError,
    check_folds,
    load_or_make_folds,
    make_folds,
    read_folds,
    read_folds_meta,
    write_folds,
)

RAVDESS = [f"Actor_{i:02d}" for i in range(1, 25)]
CREMAD = [str(1001 + i) for i in range(91)]


def _assert_speaker_independent(folds, speakers):
    tested = []
    for f in folds:
        tr, va, te = set(f.train), set(f.val), set(f.test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == set(speakers)
        assert tr and te
        tested += f.test
    assert sorted(tested) == sorted(speakers)  # every speaker tested exactly once


@pytest.mark.parametrize("protocol, speakers, k, n_folds", [
    ("kfold", [f"s{i}" for i in range(13)], 5, 5),
    ("kfold", [f"s{i}" for i in range(6)], 2, 2),
    ("loso", [f"subject_{i:02d}" for i in range(1, 12)], 5, 11),
    ("ravdess6", RAVDESS, 0, 6),
    ("cremad5", CREMAD, 0, 5),
])
def test_folds_are_speaker_independent(protocol, speakers, k, n_folds):
    folds = make_folds(speakers, protocol=protocol, k=k, seed=3)
    assert len(folds) == n_folds and [f.index for f in folds] == list(range(n_folds))
    _assert_speaker_independent(folds, speakers)
    assert all(f.val for f in folds)  # a validation set for model selection in every fold


def test_ravdess6_is_4_consecutive_actors_balanced_by_gender():
    folds = make_folds(reversed(RAVDESS), protocol="ravdess6")
    assert [f.test for f in folds][:2] == [RAVDESS[0:4], RAVDESS[4:8]]
    for f in folds:
        assert len(f.test) == 4
        ids = [int(s[-2:]) for s in f.test]
        assert sum(i % 2 for i in ids) == 2  # odd = male, even = female
        assert len(f.val) == 4 and len(f.train) == 16
    assert make_folds(RAVDESS, "ravdess6", seed=0) == make_folds(RAVDESS, "ravdess6", seed=9)


def test_cremad5_sizes():
    folds = make_folds(CREMAD, protocol="cremad5")
    assert sorted(len(f.test) for f in folds) == [18, 18, 18, 18, 19]


def test_same_seed_same_folds_other_seed_other_folds():
    spk = [f"spk{i:02d}" for i in range(20)]
    a = make_folds(spk, "kfold", k=5, seed=0)
    assert a == make_folds(list(reversed(spk)), "kfold", k=5, seed=0)  # input order does not matter
    assert a != make_folds(spk, "kfold", k=5, seed=1)
    b = make_folds(spk, "loso", seed=4, val_speakers=3)
    assert b == make_folds(spk, "loso", seed=4, val_speakers=3)
    assert all(len(f.val) == 3 for f in b)


def test_validation_options():
    spk = [f"s{i}" for i in range(10)]
    nxt = make_folds(spk, "kfold", k=5, seed=0)  # default: the next group validates
    for i, f in enumerate(nxt):
        assert f.val == nxt[(i + 1) % 5].test
    frac = make_folds(spk, "kfold", k=5, seed=0, val_speakers=0.25)
    assert all(len(f.val) == 2 for f in frac)  # 25 % of 8 training speakers
    none = make_folds(spk, "kfold", k=5, seed=0, val_speakers=0)
    assert all(f.val == [] and len(f.train) == 8 for f in none)
    for f in make_folds(spk, "kfold", k=5, seed=0, val_speakers=2):
        assert len(f.val) == 2 and not set(f.val) & set(f.test)
    with pytest.raises(FoldsError):
        make_folds(spk, "kfold", k=5, val_speakers=8)  # nobody left to train on
    loso = make_folds(spk, "loso")
    assert all(len(f.val) == 1 for f in loso)  # 10 % of 9, at least one


def test_split_protocol_and_errors():
    (fold,) = make_folds(["train", "val", "test"], "split")
    assert (fold.train, fold.val, fold.test) == (["train"], ["val"], ["test"])
    with pytest.raises(FoldsError):
        make_folds(["a", "b"], "split")
    with pytest.raises(FoldsError):
        make_folds(["a", "b", "c"], "kfold", k=5)
    with pytest.raises(FoldsError):
        make_folds(["a", "b"], "nonsense")
    with pytest.raises(FoldsError, match="tested more than once"):
        check_folds([Fold(0, ["a"], [], ["b"]), Fold(1, ["a"], [], ["b"])], ["a", "b"])
    with pytest.raises(FoldsError, match="two splits"):
        check_folds([Fold(0, ["a", "b"], [], ["b"])])


def test_write_read_roundtrip(tmp_path):
    folds = make_folds(RAVDESS, "ravdess6")
    path = write_folds(tmp_path, folds, {"protocol": "ravdess6"})
    assert path.name == "folds.json"
    assert read_folds(tmp_path) == folds and read_folds(path) == folds
    assert read_folds_meta(path)["protocol"] == "ravdess6"


def test_folds_file_is_reused_never_silently_recomputed(tmp_path):
    spk = [f"s{i}" for i in range(12)]
    path = tmp_path / "folds.json"
    first, created = load_or_make_folds(path, spk, "kfold", k=4, seed=0)
    assert created
    again, created = load_or_make_folds(path, spk, "kfold", k=4, seed=0)
    assert not created and again == first
    for kwargs in ({"k": 3}, {"seed": 1}, {"protocol": "loso"}, {"val_speakers": 2}):
        args = {"protocol": "kfold", "k": 4, "seed": 0, **kwargs}
        with pytest.raises(FoldsError, match="--refold"):
            load_or_make_folds(path, spk, **args)
    with pytest.raises(FoldsError, match="speakers"):
        load_or_make_folds(path, spk + ["s99"], "kfold", k=4, seed=0)
    assert read_folds(path) == first  # untouched by the refusals
    new, created = load_or_make_folds(path, spk, "kfold", k=3, seed=0, refold=True)
    assert created and len(new) == 3 and read_folds(path) == new
