"""Training data read part by part: the interface a fit reads a stream through.

A `Stream` is an X that `Network.fit` takes in place of an array, for data larger
than memory (`cbackprop.datasets.ParquetStream`: a Parquet file, read row group by
row group). The fit's one-network backend (`cbackprop._session.TrainingSession`,
driven by the one epoch loop of `cbackprop.trainer`) keeps a buffer of
`buffer_rows` rows (rounded down to whole batches) and refills it from `parts`
whenever the epoch's position reaches its end, so memory holds one buffer and one
part, never the file.

The order of a streamed epoch, with shuffle=True:

1. the stream's groups (a Parquet file's row groups) in a random order, drawn
   afresh each epoch from the network's random stream;
2. their rows in that order (each group's rows in file order), cut into buffers of
   `buffer_rows` rows;
3. each buffer's rows in a random order (from the same random stream), cut into
   batches.

A batch thus holds rows of the one or few groups its buffer spans; a buffer of
the whole file gives a full shuffle. With shuffle=False the rows come in the
file's order. The same seed gives the same order every run (and, with one BLAS
thread, the same θ bitwise).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np


class Stream(ABC):
    """Training data read part by part (the interface; see the module's docstring).

    Attributes
    ----------
    n_rows : int
        Rows in all (≥ 1).
    n_features : int
        Feature columns.
    n_groups : int
        Groups: the units whose order is shuffled (a Parquet file's row groups).
    buffer_rows : int
        Rows the fit holds in memory at once (rounded down to whole batches, at
        least one batch).
    """

    n_rows: int
    n_features: int
    n_groups: int
    buffer_rows: int

    @abstractmethod
    def parts(self, groups: np.ndarray, dtype) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        """(X, y, where) blocks of rows: the groups in the order given, each group's
        rows in its own order, in blocks of any size. X is 2-D of numbers (dtype if
        cheap), y the targets as `Network.fit` takes them, `where` names the block
        for error messages (e.g. "data.parquet, row group 3"). The session checks
        both, as it checks arrays."""
