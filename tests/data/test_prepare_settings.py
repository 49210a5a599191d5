"""``vqmae prepare``: bad settings end as one line and exit code 2, before any file is checked."""

from __future__ import annotations

import pytest

from vqmae.pipelines import prepare as prepare_stage


@pytest.mark.parametrize("bad, key", [
    (["workers=-1"], "workers"),
    (["timeout=0"], "timeout"),          # every file became a timeout error
    (["min_duration=-1"], "min_duration"),
    (["k=1"], "k"),
])
def test_bad_numbers_exit_2(tmp_path, capsys, bad, key):
    args = ["--dataset", "csv", "--root", str(tmp_path), "--out", str(tmp_path / "out"), *bad]
    assert prepare_stage.main(args) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and "Traceback" not in err


def test_out_naming_a_file_exits_2(tmp_path, capsys):
    f = tmp_path / "out.txt"
    f.write_text("x")
    assert prepare_stage.main(["--dataset", "csv", "--root", str(tmp_path), "--out", str(f)]) == 2
    assert "out: " in capsys.readouterr().err and f.read_text() == "x"
