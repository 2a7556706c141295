"""docs/tutorial.ipynb: committed without outputs, and it runs end to end in a fresh kernel."""

import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

import mechmem

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "tutorial.ipynb"
CELL_TIMEOUT_S = 600  # the slowest cell trains a BatchNorm run: about a minute on 2 busy cores


class _ThisInterpreter(KernelSpecManager):
    """The python3 kernel on the interpreter running the tests, whatever kernels the machine has
    installed (a user's python3 kernel could point at another Python, with another mechmem)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"],
                          display_name="Python 3", language="python", name=kernel_name)


class _Kernel(AsyncKernelManager):
    """nbclient's kernel manager, reading kernels from `_ThisInterpreter`; nbclient creates it,
    so nbclient also shuts the kernel down and closes its channels."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _ThisInterpreter(data_dir=self.data_dir)


def _kernel_env() -> dict[str, str]:
    """This process's environment, with the folder holding the imported mechmem first on the
    kernel's path, so that the notebook runs this checkout's code."""
    root = str(Path(mechmem.__file__).resolve().parent.parent)
    path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    # One intra-op thread: the tutorial's tensors are tiny, and extra threads only fight over a
    # busy machine's cores.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1",
            "JUPYTER_PLATFORM_DIRS": "1"}


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the tutorial has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {i} has outputs: strip them before committing"
        assert cell.execution_count is None, f"code cell {i} has an execution count"


# The kernel's client libraries (jupyter_client, zmq, tornado) warn about their own deprecations
# and event-loop choices; those are not the tutorial's, and only they are let through here.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_core")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:zmq")
@pytest.mark.filterwarnings("ignore::RuntimeWarning:zmq")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:tornado")
def test_tutorial_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A first cell that names the mechmem the kernel imported.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import mechmem\nprint(mechmem.__file__)"))
    client = NotebookClient(nb, kernel_manager_class=_Kernel, kernel_name="python3",
                            timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=_kernel_env())  # raises CellExecutionError on the first failing cell

    first = nb.cells[0].outputs
    assert [o.get("text", "").strip() for o in first] == [mechmem.__file__]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i} failed"
            if out.output_type == "stream":
                assert out.name == "stdout", f"cell {i} wrote to stderr: {out.text[:500]}"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in last.outputs), (
        "the phase diagram cell displayed no plotly figure")
    # Everything the notebook wrote went to its working directory, not the repository.
    assert (tmp_path / "tutorial-sweep" / "sweep.json").exists()
