"""What starts without torch: `import aimespec`, the config, the symbol table, the CLI and
`aimespec diagnose --explain` (which needs the config's algebra, not PyTorch). Each is run in a
fresh interpreter and judged by its `sys.modules`, never by a clock."""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import aimespec
from aimespec.cli import app

HEAVY = ("torch", "jaxtyping", "beartype", "numpy", "reference_model", "contracts", "aimespec.core.contract")

PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    {code}
    heavy = {heavy!r}
    loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
    sys.__stdout__.write("\\nLOADED " + json.dumps(loaded) + "\\n")
""")

CLI = textwrap.dedent("""
    from aimespec.cli import main
    sys.argv = ["aimespec", *{argv!r}]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    sys.__stdout__.write("EXIT " + str(code) + "\\n" + out.getvalue())
""")


def loaded_after(code: str) -> tuple[list[str], str]:
    """The heavy modules a fresh interpreter holds after `code`, and what it printed before."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed, _, last = done.stdout.rpartition("\nLOADED ")
    return json.loads(last), printed


def loaded_by_cli(*argv: str) -> tuple[list[str], str]:
    return loaded_after(CLI.format(argv=list(argv)))


def test_import_aimespec_and_its_config_need_no_torch():
    loaded, _ = loaded_after("import aimespec\ncfg = aimespec.AimeConfig.small()\n"
                             "print(aimespec.symbol_values(cfg)['K'], aimespec.current_mode())\n"
                             "with aimespec.checking('off'):\n    pass")
    assert loaded == []


@pytest.mark.parametrize("text", [
    "mat1 and mat2 shapes cannot be multiplied (4x512 and 256x480)",
    "RuntimeError: The size of tensor a (21) must match the size of tensor b (64) at non-singleton dimension 2",
    "this is no shape error at all",
])
def test_diagnose_explain_imports_no_torch(text):
    loaded, printed = loaded_by_cli("diagnose", "--explain", text, "--json", "--set", "hidden_dim=256")
    assert loaded == []
    code, _, document = printed.partition("\n")
    assert code == "EXIT 0"
    doc = json.loads(document)
    assert doc["config"]["hidden_dim"] == 256 and "matches" in doc


def test_the_cli_starts_without_torch_and_without_its_plugins():
    loaded, printed = loaded_by_cli("diagnose", "--list", "--json")
    assert loaded == [] and printed.startswith("EXIT 0")
    loaded, printed = loaded_by_cli("--version")
    assert loaded == [] and printed.startswith("EXIT 0\naimespec ")


def test_the_cli_loads_what_other_commands_show_only_when_they_run():
    """Before `check` forks its worker, the CLI holds neither the explainer nor rich's panels, tables and
    progress bars: `diagnose` and `collect` import them when they run."""
    views = ("aimespec.explain.engine", "rich.syntax", "rich.table", "rich.panel", "rich.progress")
    probe = "import aimespec.cli\nprint(sorted(m for m in {views!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + probe.format(views=views)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    loaded, printed = loaded_by_cli("diagnose", "--explain", "mat1 and mat2 shapes cannot be multiplied (4x512 and "
                                    "256x480)")
    assert loaded == [] and printed.startswith("EXIT 0")
    assert "numbers in the config's symbols" in printed  # the view still renders


def test_a_live_diagnosis_still_loads_torch_when_it_needs_it():
    loaded, printed = loaded_by_cli("diagnose", "4", "--json", "--set", "batch_size=2")
    assert "torch" in loaded and printed.startswith("EXIT 0")
    assert json.loads(printed.partition("\n")[2])["fix_verified"] is True


def test_plugin_commands_are_listed_and_run_though_loaded_lazily():
    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0 and "train" in listing.output
    train_help = CliRunner().invoke(app, ["train", "--help"])
    assert train_help.exit_code == 0 and "--data" in train_help.output
    unknown = CliRunner().invoke(app, ["no-such-command"])
    assert unknown.exit_code == 2


def test_every_public_name_resolves_lazily_or_not():
    for name in aimespec.__all__:
        assert getattr(aimespec, name) is not None, name
    assert set(aimespec.__all__) <= set(dir(aimespec))
    from aimespec import Contract, checked, hold

    assert Contract.__module__ == "aimespec.core.contract" and callable(checked) and callable(hold)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = aimespec.not_a_name  # type: ignore[attr-defined]
