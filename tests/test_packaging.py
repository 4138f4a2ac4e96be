"""Packaging and API papercuts: python -m, the wheel's LICENSE and py.typed, examples after install, report views."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import aimespec
from aimespec import AimeConfig, ConfigError, check

ROOT = Path(__file__).resolve().parent.parent


def test_python_dash_m_aimespec_help():
    result = subprocess.run([sys.executable, "-m", "aimespec", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "check" in result.stdout and "spec" in result.stdout


def test_the_wheel_carries_the_license_py_typed_and_the_examples():
    """What `pip wheel .` packs (verified by building it: see the README's install section)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == {"text": "MIT"}
    assert project["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    for package in wheel["packages"]:
        assert (ROOT / package / "py.typed").is_file(), package
    assert wheel["force-include"] == {"examples": "aimespec/examples"}


def test_examples_are_found_from_the_package():
    folder = aimespec.examples_path()
    assert (folder / "reward_head.py").is_file() and (folder / "user_model.py").is_file()


def test_report_rows_answer_like_the_document():
    report = check(ROOT / "examples" / "reward_head_fixed.py", AimeConfig.small(), examples=0)
    assert report.results[0]["contract"] == report["results"][0]["contract"] == "RewardHead.forward"
    assert dict(report.results[0]) == report["results"][0]
    assert report.results[0]["violations"] == []


@pytest.mark.parametrize("value", [[8, 16], (8, 16), range(8, 24, 8)])
def test_tuple_fields_take_any_sequence_of_ints(value):
    cfg = AimeConfig.small(vae_channels=value)
    assert cfg.vae_channels == (8, 16)
    assert AimeConfig(vae_channels=list(value), input_dim=64).vae_channels == (8, 16)


@pytest.mark.parametrize("value", ["8,16", [8, "16"], [], [8, 0]])
def test_tuple_fields_refuse_what_is_no_sequence_of_positive_ints(value):
    with pytest.raises(ConfigError, match="vae_channels"):
        AimeConfig(vae_channels=value)
