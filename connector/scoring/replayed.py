"""What a backtest replay produces: figures per decision (`Rated`) spread onto rows (`Replay`)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from connector.scoring.calibration import probability_late
from connector.scoring.policy import ProbabilityPolicy
from connector.scoring.rating import FACTORS

NAN = float("nan")


@dataclass(slots=True)
class Replay:
    """Per history row: the customer's score, band, probability and factor inputs on its issue day."""

    score: array[float]
    band: bytearray
    probability: array[float]
    # factor code -> input per row (NaN where the factor had no data).
    factors: dict[str, array[float]]
    # 1 where the thin-file rule applied to the customer (`calibration.under_thin_file_rule`).
    thin_file: bytearray

    def with_probability(self, probability: ProbabilityPolicy) -> Replay:
        """The same replay with probabilities from other tables."""
        values = array(
            "d",
            (
                NAN if (p := probability_late(s, bool(t), probability)) is None else p
                for s, t in zip(self.score, self.thin_file, strict=True)
            ),
        )
        return Replay(self.score, self.band, values, self.factors, self.thin_file)


@dataclass(slots=True)
class Rated:
    """Rated decisions: their figures, one entry per decision, and the decision of every row."""

    # Per row of the history rated: the index of its decision (0 = none: score 0, band A, NaN).
    owner: array[int]
    scores: array[float]
    bands: bytearray
    probabilities: array[float]
    thin_file: bytearray
    # Per factor in FACTORS order: the input `Replay.factors` shows (NaN = no data).
    factors: list[array[float]]

    def buffers(self) -> list[array[Any] | bytearray]:
        """The owner column, then the figures in `Replay` order (what a worker sends)."""
        return [
            self.owner,
            self.scores,
            self.bands,
            self.probabilities,
            self.thin_file,
            *self.factors,
        ]

    def columns(self) -> Iterator[array[float] | bytearray]:
        """The figures in `Replay` order, each dropped from here once handed out."""
        for name in ("scores", "bands", "probabilities", "thin_file"):
            column = getattr(self, name)
            setattr(self, name, None)
            yield column
        while self.factors:
            yield self.factors.pop(0)


def assemble(
    rows: int,
    parts: list[tuple[npt.NDArray[np.int64], array[int], Iterator[array[float] | bytearray]]],
) -> Replay:
    """The per-row replay from rated parts of the history.

    Each part is (its rows in the history, the decision of each of them, its figures in
    `Replay` order); the figures are spread one column at a time (each part's copy is dropped
    as soon as it is spread, so the per-decision and per-row forms never all coexist).
    """
    owners = [np.frombuffer(owner, dtype=np.int64) for _, owner, _ in parts]

    def spread(out: array[float] | bytearray, dtype: type[np.generic]) -> None:
        target = np.frombuffer(out, dtype=dtype)
        for (at, _, columns), owner in zip(parts, owners, strict=True):
            column = np.frombuffer(next(columns), dtype=dtype)
            if len(at) == rows:
                # The whole history (the rows in order): gathered straight into the result
                # (all indices are valid; "clip" keeps numpy from buffering the output).
                np.take(column, owner, out=target, mode="clip")
            else:
                target[at] = column[owner]

    numbers: list[array[float]] = []
    flags: list[bytearray] = []
    # `Rated.columns` order: score, band, probability, thin-file flag, the factors.
    for kind in ("d", "b", "d", "b", *("d" for _ in FACTORS)):
        if kind == "b":
            flags.append(bytearray(rows))
            spread(flags[-1], np.uint8)
        else:
            numbers.append(array("d", bytes(8 * rows)))
            spread(numbers[-1], np.float64)
    codes = [code for _, code in FACTORS]
    return Replay(
        numbers[0], flags[0], numbers[1], dict(zip(codes, numbers[2:], strict=True)), flags[1]
    )
