"""Training is bit-reproducible on a CPU with several threads, not only with one: two identical
runs, and a run killed and resumed, end with the same bits for every model family.

The rest of the suite pins one thread; these tests run their trainings in child processes with
two threads, where a reduction whose order depends on thread scheduling would show.
"""

import os
import signal
import subprocess
import sys
import time

import torch

from mechmem import load_checkpoint

THREADS = "2"
# Big enough that the kernels split their work over the threads (an embedding of 128 dims over
# a few hundred pairs), small enough to train in seconds.
FAMILIES = {
    "transformer": {"model": "transformer", "p": 23, "width": 32},  # d_model 128
    "mlp3": {"model": "mlp3", "p": 23, "width": 128},
    "mlp": {"model": "mlp", "p": 23, "width": 128},
}

_TRAIN = """
import sys, torch
torch.set_num_threads({threads})
from mechmem import TrainConfig, train
out = {{}}
for name, kw in {families!r}.items():
    run = train(TrainConfig(**kw, steps=30, dropout=0.1, corrupt_frac=0.2, device="cpu"))
    out[name] = run.model.state_dict()
torch.save(out, sys.argv[1])
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS}


def test_two_identical_runs_at_two_threads_end_bit_identical(tmp_path):
    code = _TRAIN.format(threads=THREADS, families=FAMILIES)
    paths = [tmp_path / f"run{k}.pt" for k in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p)], stderr=subprocess.PIPE,
                              text=True, env=_env()) for p in paths]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = (torch.load(p, weights_only=True) for p in paths)
    for family in FAMILIES:
        for k, x in a[family].items():
            assert torch.equal(x, b[family][k]), (family, k, (x - b[family][k]).abs().max())


_REPEAT = """
import torch
torch.set_num_threads({threads})
from mechmem import TrainConfig
from mechmem.train.autograd import make_group
for name, kw in {families!r}.items():
    group = make_group([TrainConfig(**kw, steps=10, dropout=0.1, device="cpu")])
    for s in range(2):
        group.advance(s)
    first = None
    for _ in range(10):  # the same step from the same state, again and again
        group.gradients(2)
        grads = [g.clone() for g in group.grads[0]]
        first = first or grads
        for (k, _), a, b in zip(group.modules[0].named_parameters(), first, grads):
            assert torch.equal(a, b), (name, k, (a - b).abs().max().item())
"""


def test_one_step_repeated_at_two_threads_gives_the_same_gradients():
    # Sharper than whole runs: a kernel whose sums depend on thread timing differs at almost
    # every repetition, even on a busy machine where two runs' threads seldom overlap.
    families = {k: v for k, v in FAMILIES.items() if k != "mlp"}  # mlp: no autograd step
    code = _REPEAT.format(threads=THREADS, families=families)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr


FLAGS = ["--model", "transformer", "--p", "23", "--width", "32", "--device", "cpu",
         "--corrupt-frac", "0.3", "--steps", "60", "--eval-every", "10", "--dropout",
         "0.1", "--quiet"]  # full batch: enough rows that the embedding's backward is split
_CLI = "import sys; from mechmem.cli import main; raise SystemExit(main(sys.argv[1:]))"


def _cli_process(*argv):
    return subprocess.Popen([sys.executable, "-c", _CLI, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def test_transformer_sigkill_then_resume_at_two_threads_ends_bit_identical(tmp_path):
    whole = _cli_process("train", *FLAGS, "-o", str(tmp_path / "whole.pt"))
    out = tmp_path / "run.pt"
    proc = _cli_process("train", *FLAGS, "--checkpoint-every", "10", "-o", str(out))
    deadline = time.monotonic() + 120
    while not out.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no periodic checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = load_checkpoint(out).step
    assert 0 < killed_at < 60, (killed_at, proc.returncode)
    resumed = _cli_process("train", "--resume", str(out), "--quiet")
    for child in (resumed, whole):
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    a, b = load_checkpoint(out), load_checkpoint(tmp_path / "whole.pt")
    assert a.step == b.step == 60
    assert a.history == b.history
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
