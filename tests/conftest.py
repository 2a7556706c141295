"""Shared fixtures."""

import pytest

from mechmem.analysis._common import single_thread


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run fastest on one intra-op thread, far faster on a busy machine; the
    thread count is restored after the module. Use with `pytestmark`."""
    with single_thread():
        yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs for minutes (deselect with -m 'not slow')")
