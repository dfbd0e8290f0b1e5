import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from s2ac import __version__
from s2ac.cli import app

runner = CliRunner()
S2AC = [sys.executable, "-c", "from s2ac.cli import run; run()"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"s2ac {__version__}"


def _all_commands() -> list[list[str]]:
    """Every group and command of the app, walked from typer's click tree (none can be missed)."""
    import typer.main

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        found.append(path)
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, child in command.commands.items():
                walk(child, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _all_commands()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    assert len(COMMANDS) >= 20  # the tree walk found the groups and their commands
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_config_show_applies_profile_and_overrides():
    result = runner.invoke(app, ["config", "show", "--profile", "small", "-o", "train.epochs=5"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["profile"] == "small"
    assert shown["train"]["epochs"] == 5
    assert shown["train"]["generator_filters"] == 16


def test_config_error_is_one_clear_line_and_exit_code_2():
    result = subprocess.run(
        [*S2AC, "config", "show", "-o", "train.epochz=3"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "train.epochz: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_info_names_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.tif"
    result = subprocess.run([*S2AC, "data", "info", str(missing)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope.tif" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_option_changes_are_validated_like_overrides(tmp_path):
    """--n-trials 0 is refused with the key named, before any data is read."""
    result = subprocess.run([*S2AC, "tune", str(tmp_path / "none"), "--n-trials", "0"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    message = " ".join((result.stdout + result.stderr).split())
    assert "tune.n_trials: Input should be greater than or equal to 1 (got 0)" in message


TINY_SYNTH = ["-o", "data.n_patches=4", "-o", "data.patch_size=64", "-o", "data.split_buffer_px=32",
              "-o", "data.ood_fraction=0"]  # fmt: skip


def test_synth_never_replaces_what_it_did_not_make(tmp_path: Path):
    """A non-empty folder without an s2ac dataset, or a file, is refused before anything is
    written; with --overwrite (or an earlier dataset) it is replaced."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    result = runner.invoke(app, ["data", "synth", "--out", str(precious), *TINY_SYNTH])
    assert result.exit_code != 0  # run() prints S2ACError messages without a traceback
    assert str(precious) in str(result.exception) and "--overwrite" in str(result.exception)
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.tex"]
    assert not any(p.name.startswith(".thesis") for p in tmp_path.iterdir())  # no staging left

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    result = runner.invoke(app, ["data", "synth", "--out", str(a_file), *TINY_SYNTH])
    assert result.exit_code != 0 and "not a folder" in str(result.exception)
    assert a_file.read_text() == "x"

    result = runner.invoke(app, ["data", "synth", "--out", str(precious), "--overwrite",
                                 *TINY_SYNTH])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (precious / "manifest.json").is_file() and not (precious / "chapter1.tex").exists()
    # its own output it replaces without being asked
    result = runner.invoke(
        app, ["data", "synth", "--out", str(precious), *TINY_SYNTH, "--seed", "9"]
    )
    assert result.exit_code == 0, result.output
