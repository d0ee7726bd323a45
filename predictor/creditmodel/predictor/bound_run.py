"""A single-row model run through inputs bound once.

Why (callgrind of a single-row request): a third of its instructions were onnxruntime's Python
binding turning the feed dict, one numpy array per input, into OrtValues on every run (an
attribute probe and a wrapper per input) before the graph ran. For one row the graph itself is a
few microseconds. `BoundRun` binds every input once, as a view into one float32 and one int64
buffer, and the output into a third; a run writes the row's values into the buffers and runs the
binding: 14-19 us against 22-31 us for the same run from a dict (timeit, reference bundle).

It serves only graphs whose inputs are all numbers (numeric features, and categorical ones as
codes: coded_inputs.py), and only once it has scored every probe row exactly as the dict path
did (`verified`); the values come from validation.Batch's `numeric` (float64 holding the float32
or integer each input receives, exactly) and `codes`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from creditmodel.core.schema import Schema


class BoundRun:
    """One session's single-row run with bound buffers. Not reentrant: a run that finds the
    buffers in use (a thread scoring one row while another does) returns None, and the caller
    takes the dict path."""

    def __init__(
        self,
        session: ort.InferenceSession,
        schema: Schema,
        coded: Sequence[tuple[str, int]],
        flat: set[str],
        output: str,
        width: int | None,
    ) -> None:
        numeric = [f for f in schema.features if f.kind == "numeric"]
        fp32 = [(i, f.name) for i, f in enumerate(numeric) if f.datatype == "FP32"]
        int64 = [(i, f.name) for i, f in enumerate(numeric) if f.datatype == "INT64"]
        # Where each buffer's values sit in a row of `numeric` and `codes`: a plain slice when
        # they are all of them in order (every numeric input FP32; every categorical one coded),
        # which numpy copies without the gather of an index array.
        self._fp32_index = _take([i for i, _ in fp32], len(numeric))
        self._int64_index = _take([i for i, _ in int64], len(numeric))
        self._code_index = _take([i for _, i in coded], len(coded))
        self._fp32 = np.zeros(len(fp32), dtype=np.float32)
        self._int64 = np.zeros(len(int64) + len(coded), dtype=np.int64)
        self._split = len(int64)
        self._out = np.zeros((1,) if width is None else (1, width), dtype=np.float32)
        self._column = None if width is None else 1
        self._binding = session.io_binding()
        self._views: list[npt.NDArray[Any]] = []  # kept alive: the OrtValues point into them
        slots: list[tuple[npt.NDArray[Any], int, str]] = [
            (self._fp32, k, name) for k, (_, name) in enumerate(fp32)
        ]
        slots += [(self._int64, k, name) for k, (_, name) in enumerate(int64)]
        slots += [(self._int64, len(int64) + k, name) for k, (name, _) in enumerate(coded)]
        for buffer, k, name in slots:
            view = buffer[k : k + 1].reshape((1,) if name in flat else (1, 1))
            self._views.append(view)
            self._binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(view))
        self._binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(self._out))
        native = getattr(session, "_sess", None)
        self._run: Callable[[], None] = (
            (lambda: native.run_with_iobinding(self._binding._iobinding, None))
            if native is not None
            else (lambda: session.run_with_iobinding(self._binding))
        )
        self._lock = threading.Lock()

    @staticmethod
    def servable(session: ort.InferenceSession, schema: Schema, coded: Sequence[Any]) -> bool:
        """Every graph input is a number: numeric features, categorical ones coded."""
        categorical = [f for f in schema.features if f.kind == "categorical"]
        return len(coded) == len(categorical) and all(
            i.type in ("tensor(float)", "tensor(int64)") for i in session.get_inputs()
        )

    def probability(
        self, numeric: npt.NDArray[np.float64], codes: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float32] | None:
        """P(positive) of the one row, or None when the buffers are in use."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            row = numeric[0]
            self._fp32[:] = row[self._fp32_index]
            if self._split:
                self._int64[: self._split] = row[self._int64_index]
            self._int64[self._split :] = codes[0, self._code_index]
            self._run()
            values = self._out if self._column is None else self._out[:, self._column]
            return np.array(values, dtype=np.float32).reshape(-1)
        finally:
            self._lock.release()

    def verified(
        self,
        numeric: npt.NDArray[np.float64],
        codes: npt.NDArray[np.intp],
        expected: npt.NDArray[np.float32],
    ) -> bool:
        """Whether every row, run alone here, scores bit for bit as `expected` (the dict path)."""
        for row in range(numeric.shape[0]):
            got = self.probability(numeric[row : row + 1], codes[row : row + 1])
            if got is None or got.tobytes() != expected[row : row + 1].tobytes():
                return False
        return True


def _take(positions: list[int], width: int) -> npt.NDArray[np.intp] | slice:
    """`positions` as an index, or the slice that selects the same when they are 0..width-1."""
    return slice(None) if positions == list(range(width)) else np.array(positions, dtype=np.intp)
