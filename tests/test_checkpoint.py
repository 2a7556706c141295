import os
import pickle
import pickletools
import stat
import subprocess
import sys
import zipfile

import pytest
import torch

from mechmem import Checkpoint, HookedMLP, MLPConfig, load_checkpoint, make_dataset, save_checkpoint
from mechmem.checkpoint import VERSION


def small_checkpoint(**overrides) -> Checkpoint:
    cfg = MLPConfig(p=11, width=8, norm="batchnorm")
    model = HookedMLP(cfg, seed=4)
    with torch.no_grad():
        model.norm.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(0))
    ds = make_dataset(op="mul", p=11, train_frac=0.6, corrupt_frac=0.3, seed=2)
    fields = dict(
        model=model,
        dataset=ds,
        history={"step": [0, 10], "test_acc": [0.1, 0.5]},
        snapshots={"step": torch.tensor([0]), "U": model.U.detach()[None].clone()},
        step=10,
        meta={"name": "tiny run"},
    )
    fields.update(overrides)
    return Checkpoint(**fields)


def test_round_trip_is_exact(tmp_path):
    ckpt = small_checkpoint()
    path = save_checkpoint(ckpt, tmp_path / "a.pt")
    back = load_checkpoint(path)
    assert back.model.cfg == ckpt.model.cfg
    for (k, a), (k2, b) in zip(
        ckpt.model.state_dict().items(), back.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    assert back.dataset.spec == ckpt.dataset.spec
    for f in ("pairs", "labels", "train_idx", "test_idx", "train_labels", "corrupted"):
        assert torch.equal(getattr(back.dataset, f), getattr(ckpt.dataset, f))
    assert back.history == ckpt.history
    assert torch.equal(back.snapshots["U"], ckpt.snapshots["U"])
    assert back.step == 10 and back.name == "tiny run" and back.path == path
    assert not back.model.training
    pairs = ckpt.dataset.pairs
    ckpt.model.eval()
    assert torch.equal(back.model(pairs), ckpt.model(pairs))


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(small_checkpoint(), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"exists; pass --force \(overwrite=True"):
        save_checkpoint(small_checkpoint(step=99), path)
    assert path.read_bytes() == before
    save_checkpoint(small_checkpoint(step=99), path, overwrite=True)
    assert load_checkpoint(path).step == 99


def test_write_leaves_no_temporary_files_and_a_normal_file_mode(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "a.pt")
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(small_checkpoint(), path)
    before = path.read_bytes()
    bad = small_checkpoint(meta={"name": object()})  # not serializable as a plain object
    with pytest.raises(TypeError, match="meta.name holds a object; only tensors"):
        save_checkpoint(bad, path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(small_checkpoint(), tmp_path / "nope" / "a.pt")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_checkpoint(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "mechmem.checkpoint", "version": 1, "x": _Evil(marker)}, path)
    with pytest.raises(ValueError, match="refused to load: it asks for .*system.*never unpickles"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError, match=str(raw.name)):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_file(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "a.pt")
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="a.pt: (truncated or corrupt|not a readable)"):
            load_checkpoint(path)


def test_garbage_is_not_called_hostile(tmp_path):
    path = tmp_path / "notes.pt"
    for text in ("just some text\n", "garbage\n"):
        path.write_text(text)
        with pytest.raises(ValueError, match="notes.pt: not a (mechmem|readable) checkpoint"):
            load_checkpoint(path)


def test_plain_state_dict_from_another_tool(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(ValueError, match="plain state_dict from another tool"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a mechmem checkpoint"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path):
    d = small_checkpoint().to_dict()
    d["version"] = VERSION + 1
    path = tmp_path / "new.pt"
    torch.save(d, path)
    with pytest.raises(ValueError, match=f"newer mechmem \\(format version {VERSION + 1}"):
        load_checkpoint(path)


def test_damaged_contents(tmp_path):
    path = tmp_path / "bad.pt"
    d = small_checkpoint().to_dict()
    d["weights"].pop("W")
    torch.save(d, path)
    with pytest.raises(ValueError, match="damaged mechmem checkpoint"):
        load_checkpoint(path)
    d = small_checkpoint().to_dict()
    d["model_config"]["width"] = -3
    torch.save(d, path)
    with pytest.raises(ValueError, match="damaged mechmem checkpoint.*width"):
        load_checkpoint(path)


def test_file_holds_only_plain_objects(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "a.pt")
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        payload = z.read(pkl)
    # Only torch's own rebuild helpers appear as globals; no mechmem class is pickled.
    ops = list(pickletools.genops(payload))
    globals_ = [arg for op, arg, _ in ops if op.name == "GLOBAL"]
    assert globals_ and all(g.split()[0].startswith(("torch", "collections")) for g in globals_)
    assert not any(op.name in ("STACK_GLOBAL", "INST", "OBJ") for op, _, _ in ops)


def test_cli_info_and_errors(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "a.pt")
    exe = [sys.executable, "-m", "mechmem"]
    ok = subprocess.run([*exe, "info", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "op=mul p=11" in ok.stdout
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:50])
    for bad in (tmp_path / "missing.pt", tmp_path / "trunc.pt"):
        r = subprocess.run([*exe, "info", str(bad)], capture_output=True, text=True)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and str(bad.name) in r.stderr
        assert "Traceback" not in r.stderr
