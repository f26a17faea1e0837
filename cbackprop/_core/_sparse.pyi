"""Stub for the sparse (CSR) first-layer kernels."""

import numpy as np
from numpy.typing import NDArray

class CSR:
    """A checked CSR matrix for the kernels: data, int32 indices, intp indptr."""

    data: NDArray[np.floating]
    indices: NDArray[np.int32]
    indptr: NDArray[np.intp]
    shape: tuple[int, int]
    itemsize: int
    nnz: int

    def __init__(self, data: NDArray[np.floating], indices: NDArray[np.int32],
                 indptr: NDArray[np.intp], n_cols: int) -> None: ...
