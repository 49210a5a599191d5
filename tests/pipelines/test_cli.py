import subprocess
import sys

import pytest

from vqmae import __version__
from vqmae.cli import COMMANDS, main


def test_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vqmae {__version__}"


def test_unknown_command_suggests(capsys):
    assert main(["pretrian"]) == 2
    assert "Did you mean 'pretrain'" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in COMMANDS if n not in ("report", "tokens")])
def test_every_stage_has_help_with_its_settings(name, capsys):
    assert main([name, "--help"]) == 0
    assert "settings" in capsys.readouterr().out


def test_every_command_module_exists():
    """No command is listed in `vqmae --help` without its implementation."""
    import importlib.util

    for name, (module, _) in COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, name


def test_stage_rejects_unknown_key_with_suggestion(capsys):
    assert main(["demo", "modalitie=[audio]"]) == 2
    assert "did you mean 'modalities'" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "vqmae", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"vqmae {__version__}"
