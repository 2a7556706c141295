"""Progress bars: tqdm's notebook bar in Jupyter, its console bar elsewhere."""

from typing import Any


def progress_bar(*, disable: bool, **kwargs: Any) -> Any:
    """A tqdm bar; `tqdm.auto` is imported only for a bar that shows, because in a Jupyter
    kernel without ipywidgets importing it warns (TqdmWarning), which `import mechmem` and every
    quiet run would otherwise do."""
    if disable:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(disable=disable, **kwargs)
