"""Face tests run MTCNN and the embedders on one thread."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """MTCNN's small convolutions run fastest on one thread, and far slower when a shared CPU is oversubscribed."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
