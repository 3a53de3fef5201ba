"""Several machines, run as processes of this host: ``train_net --num-machines 2 --machine-rank 0|1`` and
``torchrun --nnodes 2`` for the classifier train what one machine with two processes trains, only machine 0
writes, ``--resume`` continues from the folder every machine shares (and is refused, not hung, where the
machines see different runs), and a machine that dies stops the other with one line naming its rank."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_pretrain import TINY as CLASSIFIER
from test_pretrain import env
from test_train_net import datasets_root, train_net_process  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
ITERATIONS = ["SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.MAX_ITER"]


def free_port():
    """A port no process listens on now (the OS's choice: under pytest-xdist each worker gets another)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_machines(start, timeout=300):
    """``start(rank, port)`` for machine ranks 0 and 1 (each a Popen with piped output), waited for:
    [(exit status, stderr)] by rank. A run still going after ``timeout`` seconds is killed and fails the test."""
    port = free_port()
    procs = [start(rank, port) for rank in (0, 1)]
    try:
        errs = [p.communicate(timeout=timeout)[1] for p in procs]
        return [(p.returncode, err) for p, err in zip(procs, errs)]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_machine(p)


def kill_machine(proc):
    """SIGKILL all of a machine's processes: ``proc``'s group, and its children in sessions of their own (torchrun
    starts each worker so)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
    proc.wait()


def weights(path, key="model"):
    return torch.load(path, weights_only=True)[key]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) < 1e-5


def test_train_net_on_two_machines_is_train_net_on_two_processes(datasets_root, tmp_path):  # noqa: F811
    one, shared, own = tmp_path / "one", tmp_path / "machine0", tmp_path / "machine1"

    def machines(machine1_folder, iterations, *flags):
        return two_machines(lambda rank, port: train_net_process(
            datasets_root, *ITERATIONS, iterations, "OUTPUT_DIR", str(shared if rank == 0 else machine1_folder), flags=[
                "--num-machines", "2", "--machine-rank",
                str(rank), "--dist-url", f"tcp://127.0.0.1:{port}", *flags
            ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))

    def one_machine(iterations, *flags):
        r = train_net_process(datasets_root, *ITERATIONS, iterations, "OUTPUT_DIR", str(one),
                              flags=["--num-gpus", "2", "--dist-url", "auto", *flags])
        assert r.returncode == 0, r.stderr[-3000:]
        return weights(one / "model_final.pth")

    after_4, after_6 = one_machine("4"), one_machine("6", "--resume")
    assert [status for status, _ in machines(own, "4")] == [0, 0]
    assert_same_weights(weights(shared / "model_final.pth"), after_4)
    assert sorted(os.listdir(own)) == ["log.txt.rank1"]  # Detectron2's own log of rank 1, nothing else
    before = sorted(os.listdir(shared))
    # Machine 1 with a folder of its own sees no run to resume: refused on both, not a hang (nor a mixed model).
    for status, err in machines(own, "6", "--resume"):
        assert status == 2 and "on several machines OUTPUT_DIR must be one folder that every machine shares" in err
    assert sorted(os.listdir(shared)) == before
    assert [status for status, _ in machines(shared, "6", "--resume")] == [0, 0]
    assert_same_weights(weights(shared / "model_final.pth"), after_6)


def test_a_dead_machine_stops_the_other_with_one_line_naming_its_rank(datasets_root, tmp_path):  # noqa: F811
    port = free_port()
    procs = [
        train_net_process(
            datasets_root, "SOLVER.MAX_ITER", "100000", "OUTPUT_DIR", str(tmp_path / f"m{rank}"),
            flags=["--num-machines", "2", "--machine-rank",
                   str(rank), "--dist-url",
                   f"tcp://127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (tmp_path / "m0" / "metrics.json").exists():
            time.sleep(0.1)
        assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        kill_machine(procs[1])
        killed = time.time()
        err = procs[0].communicate(timeout=120)[1]
        assert time.time() - killed < 60  # measured: about 10 s on 2 busy CPU cores
    finally:
        for p in procs:
            if p.poll() is None:
                kill_machine(p)
    assert procs[0].returncode == 1
    assert "train_net (rank 0): error: lost contact with another process of the run" in err
    assert "Traceback" not in err


def test_pretraining_on_two_machines_is_pretraining_on_two_processes(tmp_path):
    one, shared, own = tmp_path / "one", tmp_path / "machine0", tmp_path / "machine1"

    def torchrun(output, *layout):
        cmd = [
            sys.executable, "-m", "torch.distributed.run", *layout, "-m", "rgs_detectron.cli.train_classifier",
            *CLASSIFIER, "--limit-train", "512", "--epochs", "4", "--resume", "--output",
            str(output)
        ]
        return subprocess.Popen(cmd, env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def machine(machine1_folder):
        return lambda rank, port: torchrun(shared if rank == 0 else machine1_folder, "--nnodes", "2", "--node_rank",
                                           str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
                                           "--nproc_per_node", "1")

    r = torchrun(one, "--nproc_per_node", "2", "--master_port", str(free_port()))
    assert r.wait(timeout=600) == 0, r.stderr.read()[-3000:]
    # Two machines, killed after the first epoch, then resumed.
    procs = [machine(own)(rank, port) for port in [free_port()] for rank in (0, 1)]
    deadline = time.time() + 300
    while time.time() < deadline and not (shared / "last.pth").exists():
        time.sleep(0.05)
    for p in procs:
        kill_machine(p)
    assert (shared / "last.pth").exists() and not (shared / "model_final.pth").exists(), "not killed in training"
    assert os.listdir(own) == []  # only machine 0 writes
    for status, err in two_machines(machine(own), timeout=120):
        assert status != 0 and "--output must be one folder that every machine shares" in err, err[-3000:]
    assert [status for status, _ in two_machines(machine(shared))] == [0, 0]
    assert_same_weights(weights(shared / "model_final.pth", "state_dict"), weights(one / "model_final.pth",
                                                                                   "state_dict"))
