"""Multi-process runs on localhost: the Kubernetes manifest's processes train together, and a
process killed with -9 ends the others within the peer timeout, with a line naming it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xtc_jax.infra import distributed

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/transfer.py:rgb->normal,cpu"
TINY = [
    "--config.data.synthetic.buildings=3",
    "--config.data.synthetic.views=8",
    "--config.data.synthetic.size=32",
    "--config.data.resolution=16",
    "--config.batch_size=4",
    "--config.train.eval_batches=1",
]
START_S = 420  # two processes on two busy cores: imports, data, compilation
_OURS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
         "JOB_COMPLETION_INDEX", distributed.PEER_TIMEOUT_ENV)  # fmt: skip


def test_wanted_and_process_id_read_slurm_kubernetes_and_our_launchers():
    assert distributed.wanted(None, {"JOB_COMPLETION_INDEX": "1", "JAX_NUM_PROCESSES": "2"})
    assert not distributed.wanted(None, {"JOB_COMPLETION_INDEX": "0", "JAX_NUM_PROCESSES": "1"})
    assert not distributed.wanted(None, {"JOB_COMPLETION_INDEX": "0"})
    assert distributed.wanted(None, {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"})
    assert distributed.wanted(None, {"SLURM_NTASKS": "4"})
    assert not distributed.wanted(None, {}) and not distributed.wanted(False, {"SLURM_NTASKS": "4"})
    assert distributed.process_id({"JAX_PROCESS_ID": "1", "JOB_COMPLETION_INDEX": "3"}) == 1
    assert distributed.process_id({"JOB_COMPLETION_INDEX": "3"}) == 3
    assert distributed.process_id({}) is None
    assert distributed.peer_timeout_s(None, {}) == distributed.DEFAULT_PEER_TIMEOUT_S
    assert distributed.peer_timeout_s(None, {distributed.PEER_TIMEOUT_ENV: "7.5"}) == 7.5
    assert distributed.peer_timeout_s(3, {distributed.PEER_TIMEOUT_ENV: "7.5"}) == 3
    with pytest.raises(ValueError, match=distributed.PEER_TIMEOUT_ENV):
        distributed.peer_timeout_s(None, {distributed.PEER_TIMEOUT_ENV: "0"})


def _render(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xtc_jax.infra.kubernetes", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("flags", [
    ("--processes=0", "--image=i", "--config=c", "--workdir=w"),
    ("--processes=2", "--image=i", "--workdir=w"),
    ("--processes=two", "--image=i", "--config=c", "--workdir=w"),
    ("--processes=2", "--image=i", "--config=c", "--workdir=w", "--name=Not_A_Label"),
])  # fmt: skip
def test_bad_manifest_input_is_one_error_line_and_status_2(flags):
    result = _render(*flags)
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _base_env(tmp_path: Path) -> dict[str, str]:
    """This environment without anything that would steer jax.distributed or the watchdog."""
    env = {k: v for k, v in os.environ.items() if k not in _OURS and not k.startswith("SLURM_")
           and "proxy" not in k.lower()}  # fmt: skip
    return dict(env, XTC_DATA_DIR=str(tmp_path / "data"))


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # a file, not a pipe: nobody has to read while they run
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _stop(processes: list[subprocess.Popen]) -> None:
    """Kills whatever is left of each process's session (the process and any children)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _wait_all(processes: list[subprocess.Popen], seconds: float) -> list[int | None]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.5)
    return [p.poll() for p in processes]


def test_kubernetes_manifest_starts_processes_that_train_together(tmp_path):
    workdir = tmp_path / "run"
    extra = [*TINY, "--config.train.steps=4", "--config.train.eval_every=4",
             "--config.train.checkpoint_every=4"]  # fmt: skip
    result = _render("--processes=2", "--image=xtc:test", f"--config={CONFIG}",
                     f"--workdir={workdir}", "--name=xtc", "--port=1234", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    service, job = yaml.safe_load_all(result.stdout)
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": "xtc"}
    assert service["spec"]["ports"] == [{"name": "coordinator", "port": 1234}]
    spec = job["spec"]
    assert (job["kind"], job["metadata"]["name"]) == ("Job", "xtc")
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] and pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "xtc_jax.main", f"--config={CONFIG}",
                                    f"--workdir={workdir}", "--distributed", *extra]  # fmt: skip
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["JAX_COORDINATOR_ADDRESS"]["value"] == "xtc-0.xtc:1234"
    assert env["JAX_NUM_PROCESSES"]["value"] == "2"
    index_path = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"

    # What the pods would run, on this machine: pod 0's name is 127.0.0.1, on a free port.
    port, processes = _free_port(), []
    command = [sys.executable, *container["command"][1:]]
    try:
        for index in range(2):
            pod_env = _base_env(tmp_path)
            for name, entry in env.items():
                value = entry.get("value", str(index))  # valueFrom: the index, as Kubernetes sets
                pod_env[name] = value.replace("xtc-0.xtc:1234", f"127.0.0.1:{port}")
            pod_env["JOB_COMPLETION_INDEX"] = str(index)
            processes.append(_start(command, pod_env, tmp_path / f"pod{index}.log"))
        statuses = _wait_all(processes, START_S + 180)
    finally:
        _stop(processes)
    logs = [(tmp_path / f"pod{index}.log").read_text() for index in range(2)]
    assert statuses == [0, 0], "\n".join(logs)
    assert "process 0 of 2" in logs[0] and "process 1 of 2" in logs[1]
    assert "stopped responding" not in logs[0] + logs[1]
    assert "eval step 4" in logs[0] and (workdir / "logs" / "metrics.jsonl").is_file()


def test_a_process_killed_with_9_ends_the_other_naming_it(tmp_path):
    timeout_s, margin_s = 10, 60
    port, processes = _free_port(), []
    long_run = ["--config.train.steps=100000", "--config.train.eval_every=100000",
                "--config.train.checkpoint_every=100000"]  # fmt: skip
    command = [sys.executable, "-m", "xtc_jax.main", f"--config={CONFIG}",
               f"--workdir={tmp_path / 'run'}", *TINY, *long_run]  # fmt: skip
    logs = [tmp_path / f"process{index}.log" for index in range(2)]
    try:
        for index in range(2):  # as launch/local_processes.sh starts them
            env = dict(_base_env(tmp_path), JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index),
                       **{distributed.PEER_TIMEOUT_ENV: str(timeout_s)})  # fmt: skip
            processes.append(_start(command, env, logs[index]))
        deadline = time.monotonic() + START_S
        while not ("process 1 of 2" in logs[1].read_text() and "\nstep " in logs[0].read_text()):
            assert all(p.poll() is None for p in processes), logs[0].read_text()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        time.sleep(2)  # a few steps, collectives across both processes
        assert processes[0].poll() is None, logs[0].read_text()
        processes[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        status = _wait_all(processes[:1], timeout_s + margin_s)[0]
        elapsed = time.monotonic() - killed
    finally:
        _stop(processes)
    output = logs[0].read_text()
    assert status is not None, f"process 0 still running {timeout_s + margin_s} s after the kill"
    assert status != 0, output
    assert "error: process 1 of 2 stopped responding (lost); ending this one" in output, output
    print(f"process 0 ended {elapsed:.1f} s after process 1 was killed, status {status}")


def test_a_process_that_fails_ends_the_other_naming_it(tmp_path):
    """A process leaving on an error (here a missing warm start) goes silent at once, though
    jax's exit hook keeps it waiting in the shutdown barrier; its peer ends after the timeout."""
    timeout_s, margin_s = 10, 60
    port, processes = _free_port(), []
    long_run = ["--config.train.steps=100000", "--config.train.eval_every=100000",
                "--config.train.checkpoint_every=100000"]  # fmt: skip
    logs = [tmp_path / f"process{index}.log" for index in range(2)]
    try:
        for index in range(2):
            fails = [f"--config.train.init_from={tmp_path / 'no_export'}"] if index else []
            command = [sys.executable, "-m", "xtc_jax.main", f"--config={CONFIG}",
                       f"--workdir={tmp_path / 'run'}", *TINY, *long_run, *fails]  # fmt: skip
            env = dict(_base_env(tmp_path), JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index),
                       **{distributed.PEER_TIMEOUT_ENV: str(timeout_s)})  # fmt: skip
            processes.append(_start(command, env, logs[index]))
        statuses = _wait_all(processes[:1], START_S + timeout_s + margin_s)
    finally:
        _stop(processes)
    failed, survivor = logs[1].read_text(), logs[0].read_text()
    assert f"error: train.init_from='{tmp_path / 'no_export'}' is not an exported" in failed, failed
    assert statuses[0] not in (None, 0), survivor
    assert "error: process 1 of 2 stopped responding (lost); ending this one" in survivor, survivor
