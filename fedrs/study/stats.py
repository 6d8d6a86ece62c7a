"""The study's statistics: paired differences over seeds and test-set intervals.

* **Paired differences** (:func:`paired_difference`): seed ``s`` fixes the split and the
  initialisation for every row of a setting, so a row is compared with the reference row seed by
  seed: ``d_s = x_s - ref_s``, mean ``d``, sample std ``s_d`` (ddof 1) and the 95% t-interval
  ``d ± t_{0.975, n-1} · s_d / sqrt(n)`` over the ``n`` seeds both have (``scipy.stats.t``). A
  difference is *distinguishable* when its interval excludes 0; with one seed there is no
  interval, and nothing is distinguishable.
* **Test-set intervals** (:func:`wilson_interval`): run folders store each client's correct and
  total test images (``clients.csv``) and the pooled test set's size (``split.json``), not
  per-image predictions, so a bootstrap over images is not possible; the binomial Wilson score
  interval of correct / total is the test-set sampling uncertainty of one run's accuracy.

Accuracies are in percent wherever this module sees them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple, Sequence

#: the confidence level of every interval of the study
CONFIDENCE = 0.95


class PairedDifference(NamedTuple):
    """A row's paired difference to the reference over the seeds both have."""

    mean: float      #: mean of d_s (nan without pairs)
    std: float       #: sample std of d_s (ddof 1; nan below 2 pairs)
    low: float       #: lower end of the t-interval (nan below 2 pairs)
    high: float      #: upper end
    pairs: int       #: seeds both have

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 (never with fewer than 2 pairs)."""
        return self.pairs >= 2 and (self.low > 0 or self.high < 0)


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def paired_difference(values: dict[int, float], reference: dict[int, float],
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """``values`` minus ``reference`` (both seed -> value), paired on the seeds both hold a finite
    value for; the t-interval over those seeds."""
    seeds = sorted(s for s in values if s in reference and _finite(values[s]) and _finite(reference[s]))
    d = [float(values[s]) - float(reference[s]) for s in seeds]
    n = len(d)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, 0)
    mean = sum(d) / n
    if n == 1:
        return PairedDifference(mean, math.nan, math.nan, math.nan, 1)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile(n - 1, confidence) * std / math.sqrt(n)
    return PairedDifference(mean, std, mean - half, mean + half, n)


def wilson_interval(correct: float, total: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``correct / total``, in percent; (nan, nan)
    without a total."""
    if not _finite(correct) or not _finite(total) or total <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return 100 * (centre - half), 100 * (centre + half)


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def mean_finite(values: Sequence[float]) -> float:
    """Mean of the finite values (nan when none)."""
    kept = [float(v) for v in values if _finite(v)]
    return sum(kept) / len(kept) if kept else math.nan


__all__ = ["CONFIDENCE", "PairedDifference", "mean_finite", "paired_difference", "t_quantile", "wilson_interval"]
