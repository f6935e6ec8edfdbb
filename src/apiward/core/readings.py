"""Counts a part of the server keeps about itself, in a form any metrics exporter reads.

The cache, the limiter, the store and the services count what they do as plain numbers
and report them as ``Reading`` values on demand (``readings()``); the Prometheus adapter
turns readings into metric families at scrape time, so nothing outside it imports a
metrics library and it imports none of the parts it reads.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class Reading:
    name: str
    """The metric's name without the ``apiward_`` prefix, e.g. ``cache_hits``."""
    help: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]
    """(label values, value); one sample with no labels for a plain number. For a
    histogram: ((upper bound,), observations up to it), cumulative, ending at ``+Inf``."""
    total: float = 0.0
    """A histogram's sum of observations."""

    @classmethod
    def counter(cls, name: str, help: str, value: float) -> Reading:
        return cls(name, help, "counter", (), (((), float(value)),))

    @classmethod
    def gauge(cls, name: str, help: str, value: float) -> Reading:
        return cls(name, help, "gauge", (), (((), float(value)),))

    @classmethod
    def counts(
        cls, name: str, help: str, labels: tuple[str, ...], counts: Mapping[Any, int]
    ) -> Reading:
        """A counter by label values (a single label's values may be plain strings)."""
        samples = tuple(
            (key if isinstance(key, tuple) else (str(key),), float(value))
            for key, value in sorted(counts.items())
        )
        return cls(name, help, "counter", labels, samples)

    @classmethod
    def histogram(cls, name: str, help: str, histogram: Histogram) -> Reading:
        bounds = [repr(float(b)) for b in histogram.bounds] + ["+Inf"]
        cumulative = accumulate(histogram.counts)
        samples = tuple(((b,), float(n)) for b, n in zip(bounds, cumulative, strict=True))
        return cls(name, help, "histogram", (), samples, histogram.total)


class Histogram:
    """Observations counted in fixed buckets: a value counts in the first bucket whose
    upper bound it does not exceed (Prometheus's ``le``), or past the last one."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class Reports(Protocol):
    """A part that counts what it does and reports the counts on demand."""

    def readings(self) -> Iterable[Reading]: ...
