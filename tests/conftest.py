import numpy as np
import pytest

#: Relative tolerances when comparing cbackprop against float64 references.
RTOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rtol(dtype):
    return RTOL[dtype]
