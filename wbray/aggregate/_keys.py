"""Integer keys for a benchmark: query positions, criterion-name codes and (query, criterion) pairs.

Reading and aggregation both key on these integers instead of strings, so a million rows are
validated and grouped with array lookups (``searchsorted``, ``bincount``), never row by row.
numpy only: the score-file reader uses this without pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from wbray.records import Query

IntArray = npt.NDArray[np.int64]
#: Any integer array (32-bit ones come from the score-file reader).
Ints = npt.NDArray[np.integer[Any]]


@dataclass(frozen=True)
class BenchKeys:
    """Lookups from a benchmark's indices and criterion names to dense integer ids.

    Attributes:
        indices: Query index at each position (benchmark file order).
        names: Criterion-name vocabulary (every name of every checklist, first-seen order).
        code: Name -> position in ``names``.
        pair_query: Query position of each criterion pair (pairs in checklist order, query by query).
        pair_name: Name code of each criterion pair.
    """

    indices: IntArray
    names: tuple[str, ...]
    code: Mapping[str, int]
    pair_query: IntArray
    pair_name: IntArray
    _lut: IntArray
    _pair_key: IntArray
    _pair_id: IntArray

    @classmethod
    def of(cls, queries: Sequence[Query]) -> BenchKeys:
        indices = np.array([q.index for q in queries], dtype=np.int64)
        code: dict[str, int] = {}
        pq: list[int] = []
        pn: list[int] = []
        for pos, q in enumerate(queries):
            for c in q.checklist:
                pq.append(pos)
                pn.append(code.setdefault(c.name, len(code)))
        lut = np.full(int(indices.max()) + 1 if len(indices) else 0, -1, dtype=np.int64)
        if len(indices) and indices.min() >= 0:
            lut[indices] = np.arange(len(indices), dtype=np.int64)
        pair_query = np.array(pq, dtype=np.int64)
        pair_name = np.array(pn, dtype=np.int64)
        key = pair_query * max(len(code), 1) + pair_name
        order = np.argsort(key, kind="stable")
        return cls(
            indices=indices,
            names=tuple(code),
            code=code,
            pair_query=pair_query,
            pair_name=pair_name,
            _lut=lut,
            _pair_key=key[order],
            _pair_id=order.astype(np.int64),
        )

    @property
    def n_queries(self) -> int:
        return len(self.indices)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_query)

    def position(self, index: Ints) -> IntArray:
        """Query position of each index; -1 where the benchmark has no such query."""
        inside = (index >= 0) & (index < len(self._lut))
        if inside.all():
            return self._lut[index]
        out = np.full(len(index), -1, dtype=np.int64)
        out[inside] = self._lut[index[inside]]
        return out

    def name_codes(self, names: Sequence[str]) -> IntArray:
        """Code of each criterion name; -1 for a name no query of the benchmark has."""
        # map() over dict.get runs in C: no Python frame per name.
        return np.fromiter(map(self.code.get, names, repeat(-1)), dtype=np.int64, count=len(names))

    def pair(self, position: Ints, name_code: Ints) -> IntArray:
        """Criterion-pair id of each (query position, name code); -1 where that query has no such
        criterion (or the position or code is already -1)."""
        if not len(self._pair_key):
            return np.full(len(position), -1, dtype=np.int64)
        key = position.astype(np.int64) * max(len(self.names), 1) + name_code
        at = np.searchsorted(self._pair_key, key)
        np.minimum(at, len(self._pair_key) - 1, out=at)
        ids = self._pair_id[at]
        ids[(self._pair_key[at] != key) | (position < 0) | (name_code < 0)] = -1
        return ids
