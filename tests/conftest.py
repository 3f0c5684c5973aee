import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def devices() -> list:
    """CPU always; CUDA as a marked parameter that skips cleanly without a GPU."""
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
