"""The Python examples in docs/ run as written."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
RUNNABLE = ["hooks.md", "data.md"]


@pytest.mark.parametrize("name", RUNNABLE)
def test_doc_examples_run(name, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)
    assert blocks, f"docs/{name} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, f"docs/{name}", "exec"), namespace)
