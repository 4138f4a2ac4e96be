"""Work alongside (aimespec/runtime/alongside.py) and the probes `check` runs there."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aimespec import AimeConfig, check
from aimespec.runtime import alongside, worker
from aimespec.runtime.alongside import Alongside, AlongsideLost
from aimespec.runtime.deadline import Deadline
from tests.bad_input import cli

CFG = AimeConfig.small()


def test_the_result_comes_back_and_the_process_changed_nothing_here():
    box = {"n": 1}

    def job():
        box["n"] = 99  # the forked process's own copy
        return [box["n"], os.getpid()]

    value, pid = Alongside(job, limit=20).result()
    assert value == 99 and pid != os.getpid() and box == {"n": 1}


def test_the_jobs_exception_is_raised_where_the_result_is_asked_for():
    def job():
        raise KeyError("no such slot")

    with pytest.raises(KeyError, match="no such slot"):
        Alongside(job, limit=20).result()


@pytest.mark.parametrize(("end", "said"), [
    (lambda: os._exit(7), "ended the probes' process with exit status 7 (the model's code called os._exit"),
    (lambda: os.kill(os.getpid(), signal.SIGSEGV), "crashed the probes' process with SIGSEGV (a segmentation fault"),
])
def test_a_process_that_ends_without_a_result_is_said_in_one_sentence(end, said):
    with pytest.raises(AlongsideLost) as lost:
        Alongside(end, limit=20).result()
    assert str(lost.value).startswith(said) and not lost.value.stopped


def _hang_in_c(seconds: float) -> None:
    """A call under a deadline that SIGALRM cannot interrupt (as C code that never returns to Python)."""
    def stuck() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)

    Deadline(seconds).run(stuck)


def test_a_process_that_hangs_is_stopped_after_its_limit(monkeypatch):
    monkeypatch.setattr(alongside, "GRACE", 0.2)
    started = time.monotonic()
    job = Alongside(lambda: _hang_in_c(0.3), limit=20)
    with pytest.raises(AlongsideLost, match=r"did not return within 20 s and could not be interrupted \(a hang in C "
                                            r"code\): the probes' process was stopped") as lost:
        job.result()
    assert lost.value.stopped and time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(job.pid, os.WNOHANG)  # killed and reaped


def test_a_large_result_is_read_whole_and_cancel_stops_a_running_process():
    assert len(Alongside(lambda: b"x" * 5_000_000, limit=20).result()) == 5_000_000
    job = Alongside(lambda: time.sleep(60), limit=60)
    job.cancel()
    with pytest.raises(AlongsideLost, match="was cancelled"):
        job.result()


def test_the_number_of_processes_running_at_once_is_bounded(monkeypatch):
    monkeypatch.setattr(alongside, "MAX_RUNNING_PER_CPU", 1)
    monkeypatch.setattr(alongside, "usable_cpus", lambda: 1)
    jobs = [Alongside(lambda i=i: i, limit=20) for i in range(4)]
    assert len(alongside._running) <= 1
    assert [j.result() for j in jobs] == [0, 1, 2, 3]


def test_room_is_made_by_whichever_process_ends_first_not_by_the_oldest(monkeypatch):
    monkeypatch.setattr(alongside, "MAX_RUNNING_PER_CPU", 1)
    monkeypatch.setattr(alongside, "usable_cpus", lambda: 2)
    long = Alongside(lambda: time.sleep(30) or "long", limit=60)  # a whole model's probes, started first
    try:
        started = time.monotonic()
        quick = [Alongside(lambda i=i: i, limit=20) for i in range(4)]  # each waits for room, never for `long`
        assert [j.result() for j in quick] == [0, 1, 2, 3] and time.monotonic() - started < 15
        assert long._done is None and len(alongside._running) == 1
    finally:
        long.cancel()


def test_work_runs_alongside_only_inside_the_worker_process():
    assert not alongside.available()  # here: the test process, whose threads and state are not ours
    if alongside.usable_cpus() >= 2:
        assert worker.isolated(alongside.available, timeout=20)
    assert worker.isolated(lambda: Alongside(worker.in_worker, limit=20).result(), timeout=20) is False


CRASH_IN_PROBES = textwrap.dedent('''
    import os
    import signal

    from reference_model.dynamics import LSTMLayer as ReferenceLSTMLayer


    class CrashingLSTMLayer(ReferenceLSTMLayer):
        """Sound under the shape checks (train mode); crashes its process in eval mode, where the probes run."""

        def forward(self, input, hx):
            if not self.training:
                os.kill(os.getpid(), signal.SIGSEGV)
            return super().forward(input, hx)
''')


@pytest.mark.skipif(alongside.usable_cpus() < 2, reason="the probes run alongside with two CPUs or more")
def test_a_crash_in_the_probes_is_a_finding_and_the_rest_of_the_report_stays(tmp_path):
    path = tmp_path / "crash_in_probes.py"
    path.write_text(CRASH_IN_PROBES)
    run = cli("check", str(path), "--examples", "1", "--no-vary-config", "--set", "batch_size=2",
              "--set", "sequence_length=3", "--json")
    assert run.code == 1, run
    (found,) = json.loads(run.stdout)["results"][0]["violations"]
    assert found["message"] == ("LSTMLayer.forward: the model's code crashed the probes' process with SIGSEGV "
                                "(a segmentation fault in C code, e.g. an extension or ctypes)")
    assert (found["kind"], found["batch"], found["seq_len"]) == ("exception", 2, 2)
    line = CRASH_IN_PROBES.splitlines().index("        return super().forward(input, hx)") + 1
    assert found["where"].endswith(f"crash_in_probes.py:{line}")  # the method's return line, as probe findings
    report = check(path, CFG.replace(batch_size=2, sequence_length=3), examples=1, vary_config=False)
    row = next(r for r in report.results if r.contract == "LSTMLayer.forward" and r.checked_in != "inside")
    assert row.probes == dict.fromkeys(("batch", "causal", "repeat"),
                                       "skipped: their process ended without a result (the finding says how)") | {
        "config": "skipped: --no-vary-config"}
    assert [f.violation.kind.value for f in row.findings] == ["exception"]
    varied = check(path, CFG.replace(batch_size=2, sequence_length=3), examples=1)
    row = next(r for r in varied.results if r.contract == "LSTMLayer.forward" and r.checked_in != "inside")
    assert row.probes["config"] == "skipped: the contract does not hold at this config (its findings come first)"
    assert [f.violation.kind.value for f in row.findings] == ["exception"]  # no config finding after it


def _shown(report):
    return [(r.contract, r.implementation, r.probes, [(f.violation.kind, f.violation.message, f.violation.where)
                                                      for f in r.findings]) for r in report.results]


@pytest.mark.skipif(alongside.usable_cpus() < 2, reason="the probes run alongside with two CPUs or more")
@pytest.mark.parametrize("name", ["fold.py", "stateful.py", "unmasked.py", "batch_first_fixed.py"])
def test_probes_alongside_report_what_probes_run_in_turn_report(name, monkeypatch, tmp_path):
    path = Path(__file__).resolve().parent.parent / "examples" / "probes" / name
    cfg = AimeConfig()
    started = tmp_path / "started"
    real_start = alongside.Alongside.__init__

    def noted(self, job, *, limit):
        with started.open("a") as out:  # the worker forks from this process: patched there too
            out.write("x")
        real_start(self, job, limit=limit)

    monkeypatch.setattr(alongside.Alongside, "__init__", noted)
    together = check(path, cfg, examples=1, vary_config=False)
    assert started.read_text(), "the probes ran alongside"
    started.unlink()
    monkeypatch.setattr(alongside, "available", lambda device="cpu": False)
    in_turn = check(path, cfg, examples=1, vary_config=False)
    assert not started.exists()
    assert _shown(together) == _shown(in_turn)
    assert together.ok == in_turn.ok


WORKER_DIES = textwrap.dedent('''
    import os
    import signal
    import time

    from reference_model.dynamics import LSTMLayer as ReferenceLSTMLayer


    class DyingLSTMLayer(ReferenceLSTMLayer):
        """Its probes (eval mode) hang in "C code"; its own example call (train mode) ends the worker."""

        def forward(self, input, hx):
            if not self.training:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                time.sleep(120)
            os._exit(3)
''')


@pytest.mark.skipif(alongside.usable_cpus() < 2, reason="the probes run alongside with two CPUs or more")
def test_probe_processes_end_with_the_worker_and_the_report_says_how_the_worker_ended(tmp_path):
    path = tmp_path / "worker_dies.py"
    path.write_text(WORKER_DIES)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "aimespec", "check", str(path), "--json", "--examples", "1",
                           "--no-vary-config", "--timeout", "5"], capture_output=True, text=True, timeout=100)
    assert time.monotonic() - started < 60  # no probe process outlives the worker holding the pipes open
    assert done.returncode == 1, done.stderr
    (found,) = json.loads(done.stdout)["results"][0]["violations"]
    assert found["message"] == ("the model's code ended the worker process with exit status 3 (the model's code "
                                "called os._exit or exited from C code); the checks it had done are lost")


def test_the_process_alongside_yields_the_cpu_to_the_worker():
    base = os.nice(0)
    assert Alongside(lambda: os.nice(0), limit=20).result() == min(19, base + alongside.NICE)


ORDER = textwrap.dedent('''
    from reference_model import build_model as reference_build_model
    from reference_model.dynamics import LSTMLayer as ReferenceLSTMLayer

    LOG = {log!r}


    def note(what, module):
        if next(module.parameters()).device.type != "meta":  # the real builds, not the meta passes
            with open(LOG, "a") as out:
                out.write(what + "\\n")


    class LSTMLayer(ReferenceLSTMLayer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            note("component", self)


    def build_model(cfg):
        model = reference_build_model(cfg)
        note("world", model)
        return model
''')


def _check_order(tmp_path):
    """`check` of ORDER's file: the report, and which real build came first."""
    log, path = tmp_path / "built.log", tmp_path / "order.py"
    path.write_text(ORDER.format(log=str(log)))
    report = check(path, CFG, examples=1, vary_config=False)
    assert report.ok, report
    return report, log.read_text().splitlines()[:2]


def test_the_whole_model_is_built_first_so_its_probes_start_first_and_the_report_keeps_its_order(tmp_path):
    report, built = _check_order(tmp_path)
    assert built == ["world", "component"]  # the longest probes start first
    rows = [(r.contract, r.implementation) for r in report.results if r.checked_in != "inside"]
    assert rows == [("LSTMLayer.forward", "LSTMLayer"), ("AimeWorldModel.forward_sequence", "build_model")]


def test_without_a_process_alongside_each_model_is_built_in_its_turn(monkeypatch, tmp_path):
    monkeypatch.setattr(alongside, "available", lambda device="cpu": False)  # one CPU: nothing gained by order
    _report, built = _check_order(tmp_path)
    assert built == ["component", "world"]  # never two models in memory at once
