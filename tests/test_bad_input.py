"""Bad model files and bad inputs against every command: exit code, one sentence, pure JSON, nothing broken.

The model files are our own, one per kind of misbehaviour issue 12 names (numbered as there):
a model that exits, crashes the interpreter, writes to file descriptor 1, hangs at import or
in C code, allocates past the memory cap, returns no mapping or breaks a value invariant. They
run in the worker process, so the command (and this test process) outlives each of them.
Bad files (checkpoints, data, output paths) and option bounds are in test_bad_files.py.
"""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bad_input import cli, one_sentence, pure_json
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, UsageError, check, hold
from aimespec.commands.trace import trace

SMALL = ["--set", "input_dim=32", "--set", "hidden_dim=32", "--set", "latent_dim=8", "--set", "batch_size=2",
         "--set", "sequence_length=4"]
CFG = AimeConfig.small(batch_size=2, sequence_length=4)

RGB_HEAD = "import os, sys, signal, time, ctypes\nimport torch\n"


def rgb(tmp_path: Path, body: str, *, top: str = "", name: str = "model.py") -> Path:
    """A model file whose RGB.balance runs `body` (then returns a valid result)."""
    path = tmp_path / name
    path.write_text(RGB_HEAD + textwrap.dedent(top) + "\nclass RGB:\n    def __init__(self, cfg):\n        pass\n\n"
                    "    def balance(self, grads):\n" + textwrap.indent(textwrap.dedent(body), "        ")
                    + "\n        return grads.mean(0)\n")
    return path


def world(tmp_path: Path, forward: str, name: str = "world.py") -> Path:
    """A model file whose build_model's forward_sequence returns `forward` (an expression of o, a and ref)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        import torch
        from reference_model import AimeWorldModel

        class Model(AimeWorldModel):
            def forward_sequence(self, o, a):
                ref = super().forward_sequence(o, a)
                return {forward}

        def build_model(cfg):
            return Model(cfg)
    """))
    return path


C_HANG = """
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # a hang in C that SIGALRM cannot interrupt
ctypes.CDLL(None).sleep(1000)
"""


def findings(document: dict) -> list[str]:
    return [v["message"] for r in document["results"] for v in r["violations"]]


# --- 7: a model that exits, crashes or writes to fd 1 ---------------------------------------------------
@pytest.mark.parametrize(("body", "said"), [
    ("os._exit(3)", "ended the worker process with exit status 3"),
    ("os.kill(os.getpid(), signal.SIGSEGV)", "crashed the worker process with SIGSEGV"),
    ("ctypes.string_at(0)", "crashed the worker process with SIGSEGV"),
    ("os.abort()", "crashed the worker process with SIGABRT"),
])
def test_7_a_model_that_ends_its_process_is_a_finding(tmp_path, body, said):
    run = cli("check", str(rgb(tmp_path, body)), "--json", "--examples", "0", *SMALL)
    assert run.code == 1, run
    document = pure_json(run)
    assert document["ok"] is False
    (message,) = findings(document)
    assert message.startswith(f"the model's code {said}"), message


def test_7_fd1_and_sys_stdout_writes_never_reach_stdout(tmp_path):
    path = rgb(tmp_path, """
        os.write(1, b"{not json")
        sys.__stdout__.write("more"); sys.__stdout__.flush()
        print("and a print")
    """, top='os.write(1, b"at import ")\n')
    run = cli("check", str(path), "--json", "--examples", "0", *SMALL)
    assert run.code == 0, run
    assert pure_json(run)["ok"] is True


def test_7_fd1_writes_in_trace_keep_its_json_pure(tmp_path):
    path = tmp_path / "chatty.py"
    path.write_text(textwrap.dedent("""
        import os, sys
        from reference_model import AimeWorldModel
        os.write(1, b"import noise ")
        class Model(AimeWorldModel):
            def forward_sequence(self, o, a):
                os.write(1, b"forward noise"); sys.__stdout__.write("x"); sys.__stdout__.flush()
                return super().forward_sequence(o, a)
        def build_model(cfg):
            return Model(cfg)
    """))
    run = cli("trace", str(path), "--json", *SMALL)
    assert run.code == 0, run
    assert pure_json(run)["ok"] is True


def test_7_the_python_api_survives_a_model_that_exits(tmp_path):
    report = check(rgb(tmp_path, "os._exit(0)"), CFG, examples=0)  # even a "successful" exit
    assert not report.ok
    assert "exit status 0" in report["results"][0]["violations"][0]["message"]


def test_7_in_a_real_process_a_segfaulting_model_keeps_the_exit_code_and_json(tmp_path):
    path = rgb(tmp_path, "os.write(1, b'noise'); os.kill(os.getpid(), signal.SIGSEGV)")
    done = subprocess.run([sys.executable, "-m", "aimespec", "check", str(path), "--json", "--examples", "0", *SMALL],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["ok"] is False
    assert "Traceback" not in done.stderr


# --- 5: hangs at import and in C code ------------------------------------------------------------------
@pytest.mark.parametrize("top", ["time.sleep(1000)\n", "signal.pause()\n", C_HANG.strip() + "\n",
                                 "while True:\n    pass\n"])
def test_5_a_model_that_hangs_at_import_is_one_sentence_within_the_time_limit(tmp_path, top):
    path = rgb(tmp_path, "pass", top=top)
    started = time.monotonic()
    for command in ("check", "trace"):
        run = cli(command, str(path), "--timeout", "1", *SMALL)
        line = one_sentence(run, 2, f"importing {path}")
        assert "did not finish within 1 s" in line or "could not be interrupted" in line, line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("body", "said"), [
    ("signal.pause()", "RGB.balance: did not return within 1 s"),
    (C_HANG, "did not return within 1 s and could not be interrupted (a hang in C code)"),
])
def test_5_a_call_that_hangs_is_a_finding(tmp_path, body, said):
    started = time.monotonic()
    report = check(rgb(tmp_path, body), CFG, examples=0, timeout=1)
    assert not report.ok
    assert any(said in f.violation.message for f in report.findings), report.to_json()
    assert time.monotonic() - started < 30


def test_5_trace_stops_a_forward_pass_hung_in_c_code(tmp_path):
    path = world(tmp_path, "ref")
    path.write_text("import signal, ctypes\n" + path.read_text().replace(
        "ref = super()", "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM}); ctypes.CDLL(None).sleep(999)\n"
                         "        ref = super()"))
    run = cli("trace", str(path), "--json", "--timeout", "5", *SMALL)  # building the model may take a while
    assert run.code == 1, run
    assert "could not be interrupted" in pure_json(run)["error"]


def test_5_a_model_that_closes_the_workers_channel_and_hangs_is_stopped(tmp_path):
    report = check(rgb(tmp_path, "os.closerange(3, 4096); time.sleep(1000)"), CFG, examples=0, timeout=1)
    assert not report.ok
    (finding,) = report.findings
    assert finding.violation.message.startswith("the model's code closed the worker process's channel to aimespec")


# --- memory ---------------------------------------------------------------------------------------------
def test_an_allocation_past_max_memory_is_a_finding_naming_the_size(tmp_path):
    run = cli("check", str(rgb(tmp_path, "torch.empty(64 << 30, dtype=torch.uint8).fill_(1)")), "--json",
              "--examples", "0", "--max-memory", "2", *SMALL)
    assert run.code == 1, run
    assert any("you tried to allocate 68719476736 bytes" in m for m in findings(pure_json(run)))


def test_an_engine_allocation_past_max_memory_is_one_sentence():
    run = cli("trace", "--batch", "100000", "--max-memory", "1", *SMALL)
    one_sentence(run, 2, "ran out of memory allocating a tensor", "capped at 1.0 GiB (--max-memory)")


def test_max_memory_must_be_positive():
    one_sentence(cli("check", "--max-memory", "0"), 2, "--max-memory must be a finite positive number of GiB")


# --- 8: trace holds the result to the contract -----------------------------------------------------------
@pytest.mark.parametrize("forward", ["None", "'latents'", "[ref['latents']]"])
def test_8_trace_of_a_model_that_returns_no_mapping_fails(tmp_path, forward):
    run = cli("trace", str(world(tmp_path, forward)), "--json", *SMALL)
    assert run.code == 1, run
    document = pure_json(run)
    assert document["ok"] is False and document["error"] is None
    (v,) = document["violations"]
    assert v["message"].startswith("AimeWorldModel.forward_sequence: return expected a mapping"), v


def test_8_trace_json_reports_a_broken_value_invariant(tmp_path):
    path = world(tmp_path, "{**ref, 'attention_maps': ref['attention_maps'] * 3}")  # no longer sums to 1
    run = cli("trace", str(path), "--json", *SMALL)
    assert run.code == 1, run
    document = pure_json(run)
    assert document["ok"] is False
    assert [v["tensor"] for v in document["violations"]] == ["attention_maps"]
    assert document["violations"][0]["kind"] == "value"
    text = cli("trace", str(path), *SMALL)
    assert text.code == 1 and "attention_maps" in text.stdout


def test_8_trace_of_a_good_model_still_passes():
    run = cli("trace", "--json", *SMALL)
    assert run.code == 0, run
    assert pure_json(run)["violations"] == []


# --- 11: hold and BatchNorm at B = 1 ------------------------------------------------------------------------
def test_11_trace_batch_1_on_a_batchnorm_model_is_a_finding(tmp_path):
    path = tmp_path / "bn.py"
    path.write_text(textwrap.dedent("""
        import torch
        from reference_model import AimeWorldModel

        class Model(AimeWorldModel):
            def __init__(self, cfg):
                super().__init__(cfg)
                self.norm = torch.nn.BatchNorm1d(cfg.latent_dim)

            def forward_sequence(self, o, a):
                out = super().forward_sequence(o, a)
                self.norm(out["latents"][:, 0])
                return out

        def build_model(cfg):
            return Model(cfg)
    """))
    run = cli("trace", str(path), "--batch", "1", "--json", *SMALL)
    assert run.code == 1, run
    assert "Expected more than 1 value per channel" in pure_json(run)["error"]
    assert cli("trace", str(path), "--batch", "2", *SMALL).code == 0


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"B": 0}, "B must be an integer in [1, 1048576], got 0"),
    ({"B": -1}, "B must be an integer in [1, 1048576], got -1"),
    ({"T": 0}, "T must be an integer in [1, 1048576], got 0"),
    ({"ref": "DPGMMPrior.nope"}, "hold: 'DPGMMPrior.nope' names no contract method (no method 'nope')"),
    ({"ref": "Nope.forward"}, "hold: 'Nope.forward' names no contract method (no contract named 'Nope'"),
])
def test_11_hold_rejects_bad_sizes_and_unknown_methods(kwargs, needle):
    from reference_model.prior import DPGMMPrior

    ref = kwargs.pop("ref", "DPGMMPrior.forward")
    with pytest.raises(UsageError) as caught:
        hold(DPGMMPrior, ref, CFG, **kwargs)
    assert needle in str(caught.value)


def test_a_config_class_of_the_model_file_comes_back_without_importing_the_file_here(tmp_path):
    from aimespec.runtime.discover import load_source
    from aimespec.runtime.worker import isolated

    path = tmp_path / "reward.py"
    path.write_text(textwrap.dedent("""
        import dataclasses
        from aimespec import AimeConfig

        @dataclasses.dataclass(frozen=True)
        class RewardConfig(AimeConfig):
            reward_dim: int = 7

        def build_model(cfg):
            raise RuntimeError("never called")
    """))
    before = set(sys.modules)
    cfg = isolated(lambda: load_source(path).module.RewardConfig(latent_dim=9, reward_dim=11), timeout=20.0)
    assert (type(cfg).__name__, cfg.latent_dim, cfg.to_dict()["reward_dim"]) == ("RewardConfig", 9, 11)
    assert isinstance(cfg, AimeConfig)
    assert not [m for m in set(sys.modules) - before if m.startswith("aimespec_user_")]


def test_the_engines_can_run_in_process_too(tmp_path):
    assert check(rgb(tmp_path, "pass"), CFG, examples=0, isolate=False).ok
    assert trace(None, CFG, isolate=False).ok


# --- hypothesis: --set values and config files ---------------------------------------------------------
KEYS = sorted(AimeConfig().to_dict())
VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str), st.floats(allow_nan=True).map(repr),
    st.text(max_size=12), st.sampled_from(["", "inf", "-inf", "nan", "1e400", "0x10", "1_000", "true", "[]",
                                           "64,128", "9" * 5000, "\x00", "é"]),
)


def _spec_promise(run) -> None:
    if run.code == 0:
        assert pure_json(run)["symbols"]
    else:
        one_sentence(run, 2)


@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), value=VALUES)
def test_any_set_value_is_json_or_one_sentence(key, value):
    if "=" in key:
        return
    _spec_promise(cli("spec", "--json", "--set", f"{key}={value}"))


@given(table=st.dictionaries(st.sampled_from([*KEYS, "nope"]), st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20), st.floats(), st.text(max_size=6), st.booleans(), st.none(),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=4)), max_size=4),
    form=st.sampled_from(["json", "toml", "garbage"]))
def test_any_config_file_is_json_or_one_sentence(tmp_path_factory, table, form):
    folder = tmp_path_factory.mktemp("cfg")
    if form == "json":
        path = folder / "c.json"
        path.write_text(json.dumps(table))
    elif form == "toml":
        path = folder / "c.toml"
        lines = [f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None]
        path.write_text("\n".join(lines))
    else:
        path = folder / "c.toml"
        path.write_bytes(json.dumps(table).encode()[::-1] + b"\xff")
    _spec_promise(cli("spec", "--json", "--config", str(path)))
