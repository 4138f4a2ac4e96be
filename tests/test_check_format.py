"""`check --format github|json|text` and the terminal view's polish (plurals, no filler, 100 columns)."""

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from aimespec.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
SMALL = ["--set", "input_dim=32", "--set", "hidden_dim=32", "--set", "num_latent_channels_perceiver=32",
         "--set", "attention_resolution=7", "--set", "batch_size=2", "--set", "sequence_length=4",
         "--set", "num_codebook_perceiver=32", "--set", "perceiver_code_dim=16", "--set", "latent_dim=8",
         "--set", "attention_dim=16"]

# two findings: a wrong width returned (a shape finding) and a crash with a % and a newline in its message
TWO_BUGS = '''
import torch


class RGB:
    def __init__(self, cfg):
        pass

    def balance(self, grads):
        raise RuntimeError("100% broken,\\nsecond line: here")


class VAEEncoder(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.d = cfg.latent_dim

    def forward(self, x, context):
        B = x.shape[0]
        return {"mu": torch.zeros(B, self.d + 1), "logvar": torch.zeros(B, self.d)}
'''
ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]+),line=(?P<line>\d+),title=(?P<title>[^:]+)::(?P<msg>.+)$")


def _model(tmp_path: Path, text: str = TWO_BUGS) -> str:
    path = tmp_path / "two_bugs.py"
    path.write_text(text)
    return str(path)


def test_github_format_prints_one_annotation_per_finding_and_nothing_else(tmp_path):
    path = _model(tmp_path)
    result = runner.invoke(app, ["check", path, *SMALL, "--examples", "0", "--format", "github"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    doc = json.loads(runner.invoke(app, ["check", path, *SMALL, "--examples", "0", "--json"]).stdout)
    findings = [v for r in doc["results"] for v in r["violations"] if not v.get("repeat_of")]
    assert len(lines) == len(findings) == 2  # mu's shape and the crash, nothing else
    parsed = [ANNOTATION.match(line) for line in lines]
    assert all(parsed), lines
    by_title = {m["title"]: m for m in parsed if m}
    crash = by_title["RGB.balance"]
    assert crash["file"].endswith("two_bugs.py") and crash["line"] == "10"  # the raising line
    assert "100%25 broken%2C" not in crash["msg"] and "100%25 broken," in crash["msg"]  # data escapes % only
    assert "%0Asecond line" in crash["msg"] and "\n" not in crash["msg"]
    assert "VAEEncoder.forward" in by_title
    assert by_title["VAEEncoder.forward"]["line"] == "20"  # the return line


def test_format_json_is_json_and_text_is_the_default(tmp_path):
    path = _model(tmp_path)
    as_json = runner.invoke(app, ["check", path, *SMALL, "--examples", "0", "--format", "json"])
    flag = runner.invoke(app, ["check", path, *SMALL, "--examples", "0", "--json"])
    assert as_json.exit_code == flag.exit_code == 1
    a, b = json.loads(as_json.stdout), json.loads(flag.stdout)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    text = runner.invoke(app, ["check", path, *SMALL, "--examples", "0"])
    assert text.stdout.startswith("aimespec check ") and "::error" not in text.stdout


def test_format_usage_errors_exit_2():
    bad = runner.invoke(app, ["check", "--format", "xml"])
    assert bad.exit_code == 2 and "--format must be one of text, json, github" in bad.stderr
    both = runner.invoke(app, ["check", "--format", "github", "--json"])
    assert both.exit_code == 2 and "one of --json and --format github" in both.stderr


def test_a_passing_check_prints_no_annotation(tmp_path):
    path = _model(tmp_path, "class RGB:\n    def __init__(self, cfg):\n        pass\n"
                            "    def balance(self, grads):\n        return grads.mean(0)\n")
    result = runner.invoke(app, ["check", path, "--format", "github"])
    assert result.exit_code == 0 and result.stdout == ""


def test_terminal_view_plurals_no_filler_and_100_columns(tmp_path):
    path = _model(tmp_path, "class RGB:\n    def __init__(self, cfg):\n        pass\n"
                            "    def balance(self, grads):\n        return (grads.mean(0),)\n")
    result = runner.invoke(app, ["check", path])
    assert result.exit_code == 1
    out = result.stdout
    assert "1 of 1 check failed with 1 finding" in out and "1 checks" not in out
    assert "2 calls" in out and "seen       2 times" in out
    assert not re.search(r"^\s*│?\s*(expected|got)\s+-\s", out, flags=re.M)  # no filler rows
    assert max(len(line) for line in out.splitlines()) <= 100
    header = out.split("┏")[0]  # the lines above the table: the path, wrapped after a "/" when it must be
    assert "".join(header.splitlines()) == f"aimespec check {path}"
    assert all(line.endswith("/") for line in header.splitlines()[:-1])


def test_a_long_path_is_wrapped_only_between_names(tmp_path):
    deep = tmp_path / ("a_rather_long_folder_name_" * 2) / ("another_long_folder_name_" * 2) / "x"
    deep.mkdir(parents=True)
    path = _model(deep, "class RGB:\n    def __init__(self, cfg):\n        pass\n"
                        "    def balance(self, grads):\n        return grads.mean(0)\n")
    out = runner.invoke(app, ["check", path]).stdout
    lines = out.split("┏")[0].splitlines()
    assert len(lines) > 1 and all(len(line) <= 100 for line in lines)
    assert "".join(lines) == f"aimespec check {path}"


def test_subprocess_github_format(tmp_path):
    done = subprocess.run([sys.executable, "-m", "aimespec", "check", _model(tmp_path), *SMALL, "--examples", "0",
                           "--format", "github"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stdout and all(ANNOTATION.match(line) for line in done.stdout.splitlines())
