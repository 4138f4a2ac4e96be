"""Exit codes: a usage error is the user's (2, one sentence); anything else escaping a command is ours (3)."""

import importlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aimespec import ConfigError, ContractNotFound, ContractViolation, UsageError, checking
from aimespec.cli import app
from aimespec.core.dims import DimError, evaluate
from aimespec.core.errors import REPORT_BUG, InputError
from aimespec.explain.documented import documented_error

runner = CliRunner()
REPORT = "this is a bug in aimespec, not in your input or model; please report it with the traceback above"


def _boom(exc: BaseException):
    def raise_(*_args, **_kwargs):
        raise exc

    return raise_


@pytest.mark.parametrize("exc", [ValueError("an internal invariant broke"), RuntimeError("an internal bug"),
                                 KeyError("symbol"), TypeError("bad call")])
@pytest.mark.parametrize(("command", "target"), [
    (["spec", "--json"], "aimespec.commands.spec.build_spec"),
    (["check", "--examples", "0"], "aimespec.commands.check.check"),
    (["trace"], "aimespec.commands.trace.trace"),
    (["diagnose", "--explain", "size mismatch"], "aimespec.explain.engine.explain"),  # imported when it runs
    (["train", "--data", "episodes.npz", "--steps", "1"], "reference_model.train.train"),  # a plugin command
])
def test_an_unexpected_exception_in_an_engine_is_our_bug_exit_3(monkeypatch, command, target, exc):
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, _boom(exc))  # the module, not a same-named function
    result = runner.invoke(app, command)
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "Traceback (most recent call last)" in result.stderr  # always, without --verbose
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last == f"error: aimespec itself failed ({type(exc).__name__}: {exc}): {REPORT} and the command you ran"


@pytest.mark.parametrize(("args", "sentence"), [
    (["spec", "--set", "latent_dim=-1"], "error: latent_dim: must be a positive integer, got -1\n"),
    (["spec", "--set", "latnet_dim=3"],
     "error: latnet_dim: is not a config key (--set); see `aimespec spec` for the keys\n"),
    (["check", "/nonexistent/model.py"], None),
])
def test_a_usage_error_is_one_sentence_exit_2(args, sentence):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "bug" not in result.stderr
    if sentence:
        assert result.stderr == sentence


def test_a_bad_checking_mode_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "loud")
    result = runner.invoke(app, ["spec"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "AIMESPEC_CHECK='loud' is not a checking mode" in result.stderr


_PATCHED = """
import sys
import aimespec.commands.spec as spec
def boom(*args, **kwargs):
    raise {exc}
spec.{name} = boom
from aimespec.cli import main
sys.argv = ["aimespec", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("name", "exc"), [
    ("build_spec", "ValueError('an internal invariant broke')"),
    ("SpecReport.to_json", "RuntimeError('rendering broke')"),  # outside the command's guard: main's backstop
])
def test_subprocess_exit_3_with_the_traceback_and_the_report_line(name, exc):
    code = _PATCHED.format(exc=exc, name=name)
    if "." in name:
        code = code.replace(f"spec.{name} = boom", f"spec.SpecReport.{name.split('.')[1]} = boom")
    done = subprocess.run([sys.executable, "-c", code, "spec", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip("\n").splitlines()[-1].endswith(f"{REPORT} and the command you ran")


def test_subprocess_usage_error_exit_2():
    done = subprocess.run([sys.executable, "-m", "aimespec", "spec", "--set", "latent_dim=0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "error: latent_dim: must be a positive integer, got 0\n"


def test_usage_errors_keep_the_python_types_spec_names():
    assert issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)
    assert issubclass(ContractNotFound, UsageError) and issubclass(ContractNotFound, LookupError)
    assert issubclass(InputError, UsageError) and issubclass(InputError, ValueError)
    with pytest.raises(InputError, match="not a checking mode"), checking("loud"):
        pass
    with pytest.raises(InputError, match="errors 1 to 5"):
        documented_error(9)
    with pytest.raises(DimError) as info:
        evaluate("B**2", {"B": 2})
    assert isinstance(info.value, UsageError)
    assert "{error}" in REPORT_BUG


def test_errors_pickle_whole_so_a_worker_process_sends_them_back():
    import pickle

    from aimespec.core.errors import UnknownConfigKey
    from aimespec.core.violation import Violation
    from reference_model.trainer import NonFiniteLoss

    for exc in (ConfigError("latent_dim", "must be positive"), UnknownConfigKey("latnet_dim", "is not a config key")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.field == exc.field
    v = Violation(contract="X.f", tensor="h", kind="shape", message="X.f: h is off", dims=("B",), got=[3])
    back = pickle.loads(pickle.dumps(ContractViolation([v, v])))
    assert back.violations == [v, v] and str(back).startswith("2 contract violations:")
    loss = pickle.loads(pickle.dumps(NonFiniteLoss("nan at step 3", {"kl_z": float("inf")})))
    assert loss.terms == {"kl_z": float("inf")} and str(loss) == "nan at step 3"


def test_a_worker_error_that_cannot_travel_stays_a_bug_unless_it_is_a_usage_error():
    import pickle

    from aimespec.runtime.worker import pickled_error

    class Odd(ValueError):  # a bug's exception whose __init__ takes other arguments: it cannot be unpickled
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")

    class OddUsage(UsageError):
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")

    _, bug, _ = pickle.loads(pickled_error(Odd(1, 2), None))
    assert type(bug) is RuntimeError and str(bug) == "Odd: 1 2"
    _, usage, _ = pickle.loads(pickled_error(OddUsage("bad", "input"), None))
    assert type(usage) is UsageError and str(usage) == "bad input"
