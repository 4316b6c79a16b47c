import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and OpenMP's spin-waits cost many times the work
    when the machine's two cores are shared with worker processes; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
