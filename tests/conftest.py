import os

import pytest
import torch

os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def f64():
    """Double precision for exact equivalence checks."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)
