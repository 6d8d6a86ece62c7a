"""What a run of the study costs, estimated from measured round times before it runs.

``params/make_studies.py --estimate`` sums :func:`estimate_run_seconds` over a tier's params
files; a sweep (:func:`time_left`) calibrates the same estimates on the runs it has finished and
shows the time left. The model is deliberately simple and its constants
are measurements, so that a new measurement replaces one number:

* a round on Fed-UCMerced (10 clients, 1,680 training images, evaluation every 2 rounds) costs
  :data:`ROUND_SECONDS` of one core: 8.3 s when the image encoder runs in training (FedRSCLIP's
  visual prompts, PromptFL+VPT), 1.1 s for text prompts on cached image features, 4.5 s for
  FedOTP's transport over cached patch tokens;
* of that, :data:`EVAL_SHARE` is evaluation (every client's personalised model on its test
  split and the global model on the pooled test set) and the rest training;
* training scales with the training images that take part in a round (the dataset's images,
  the sampled fraction of clients, a few-shot cap, the matched-step reference's steps of an
  average client), evaluation with the dataset's images and the evaluation cadence;
* every run pays :data:`SETUP_SECONDS` (backbone, image decoding, feature cache) scaled by its
  images.

Configurations are the plain mappings of a params file (``yaml.safe_load``), so no run is built.
FedPGP's prior term is costed as a text-prompt round and a zero-shot run as evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

#: CPU seconds of one core per round on Fed-UCMerced (10 clients, Dirichlet 0.5, 1,680 training
#: images), evaluation every round included, with exact text truncation: benchmarks/bench_round.py
#: (FedRSCLIP 8.25 s; PromptFL 0.75 s and text-only FedRSCLIP 1.48 s, so 1.1 s for text prompts;
#: FedOTP's transport over cached patch tokens 4.45 s). CPU time, so a loaded machine's wall
#: time is longer (the pilot's FedRSCLIP round took 33 s of wall time beside other jobs).
ROUND_SECONDS: dict[str, float] = {"image": 8.3, "text": 1.1, "transport": 4.5}
#: the evaluation cadence at which :data:`ROUND_SECONDS` was measured
MEASURED_EVERY = 1
#: share of a measured round spent evaluating (assumed: personalised + global scoring is about
#: 840 forward passes against 1,680 forward + backward passes of training)
EVAL_SHARE = 0.2
#: seconds of one core per run for setup on Fed-UCMerced (scaled by images)
SETUP_SECONDS = 20.0
#: images of the shipped datasets (the EuroSAT archive is a 6,000-image subset)
DATASET_IMAGES: dict[str, int] = {"UCMerced": 2100, "RSSCN7": 2800, "EuroSAT": 6000, "AID-holdout": 1027,
                                  "AID": 10000}
#: classes of the shipped datasets (for the few-shot cap)
DATASET_CLASSES: dict[str, int] = {"UCMerced": 21, "RSSCN7": 7, "EuroSAT": 10, "AID-holdout": 30, "AID": 30}
#: the dataset of the measurement
REFERENCE_DATASET = "UCMerced"


def uses_image_encoder(method: Mapping[str, Any]) -> bool:
    """Whether training runs the image encoder (visual prompts) rather than cached features."""
    name = method.get("name")
    if name in ("fedrsclip", "fedrsclip-local", "centralised"):
        return method.get("visual_prompts", True) is not False
    if name == "promptfl":
        return int(method.get("visual_tokens") or 0) > 0
    return False


def _datasets(data: Mapping[str, Any]) -> list[str]:
    return list(data.get("cross_domain") or [data.get("dataset", REFERENCE_DATASET)])


def _images(names: list[str]) -> int:
    return sum(DATASET_IMAGES.get(n, DATASET_IMAGES[REFERENCE_DATASET]) for n in names)


def train_image_fraction(cfg: Mapping[str, Any]) -> float:
    """Training images of one round relative to all training images of the configured data:
    the sampled fraction of clients, a few-shot cap (an upper bound: K images per class and
    client), and the matched-step reference's one average client's steps."""
    data, train, method = cfg.get("data", {}), cfg.get("train", {}), cfg.get("method", {})
    fraction = float(train.get("sample_fraction", 1.0))
    clients = int(data.get("num_clients", 10))
    shots = data.get("few_shot")
    if shots:
        names = _datasets(data)
        n_train = (1 - float(data.get("test_fraction", 0.2))) * _images(names)
        cap = int(shots) * sum(DATASET_CLASSES.get(n, 21) for n in names) * clients / len(names)
        fraction *= min(1.0, cap / n_train)
    if method.get("name") == "centralised" and method.get("steps_per_round") == "matched":
        fraction /= clients
    return fraction


def estimate_run_seconds(cfg: Mapping[str, Any], done_rounds: int = 0) -> float:
    """Seconds of one core that the run of the plain params mapping ``cfg`` takes (an estimate);
    ``done_rounds``: rounds an interrupted run has already finished (its resume pays the setup
    again, then only the rounds left)."""
    data, train, method = cfg.get("data", {}), cfg.get("train", {}), cfg.get("method", {})
    scale = _images(_datasets(data)) / DATASET_IMAGES[REFERENCE_DATASET]
    rounds = int(train.get("rounds", 10))
    every = int(cfg.get("eval", {}).get("every", 1))
    kind = ("image" if uses_image_encoder(method)
            else "transport" if method.get("name") == "fedotp" and method.get("matching", "ot") == "ot"
            else "text")
    round_s = ROUND_SECONDS[kind]
    train_s = 0.0 if method.get("name") == "zeroshot" else round_s * (1 - EVAL_SHARE) * train_image_fraction(cfg)
    eval_s = round_s * EVAL_SHARE * MEASURED_EVERY  # one evaluation
    done = min(max(0, int(done_rounds)), rounds)
    evaluations = rounds // every + 1 + (rounds % every != 0)  # round 0, every k-th, the last
    if done:
        evaluations = max(0, evaluations - 1 - done // every)  # round 0's and the k-th rounds' are done
    return scale * (SETUP_SECONDS + (rounds - done) * train_s + evaluations * eval_s)


# --- a sweep's time left ------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeLeft:
    """A sweep's progress and the wall time it has left.

    ``seconds``: wall seconds until the last run ends (the cost model's estimates of the runs left,
    times ``ratio``, shared by ``jobs`` parallel runs); ``ratio``: measured wall seconds over
    estimated seconds of the ``calibrated_on`` finished runs (1.0, uncalibrated, before any)."""

    done: int
    total: int
    seconds: float
    ratio: float = 1.0
    calibrated_on: int = 0
    jobs: int = 1

    def basis(self) -> str:
        """What the estimate rests on: ``estimate x1.3 calibrated on 12 runs`` or ``uncalibrated estimate``."""
        if not self.calibrated_on:
            return "uncalibrated estimate"
        runs = f"{self.calibrated_on} run{'s' if self.calibrated_on != 1 else ''}"
        return f"estimate x{self.ratio:.2g} calibrated on {runs}"

    def text(self) -> str:
        """``12/48 runs done, ~37 min left (estimate x1.3 calibrated on 12 runs)``."""
        head = f"{self.done}/{self.total} runs done"
        return head if self.done >= self.total else f"{head}, {self.left_text()}"

    def left_text(self) -> str:
        """``~37 min left (estimate x1.3 calibrated on 12 runs)``."""
        return f"~{format_duration(self.seconds)} left ({self.basis()})"

    def calibration_text(self) -> str:
        """``measured x1.3 the cost model's estimate over 12 runs`` (or that no run was measured)."""
        if not self.calibrated_on:
            return "no run with a measured wall time to calibrate the cost model on"
        return (f"measured x{self.ratio:.2g} the cost model's estimate over {self.calibrated_on} "
                f"run{'s' if self.calibrated_on != 1 else ''}")

    def to_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "seconds_left": round(self.seconds, 1),
                "ratio": round(self.ratio, 4), "calibrated_on": self.calibrated_on, "jobs": self.jobs}


def format_duration(seconds: float) -> str:
    """``45 s``, ``37 min``, ``2.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def calibration_ratio(finished: Sequence[tuple[float, float]]) -> float:
    """Measured over estimated seconds of finished runs, ``(estimated, measured)`` pairs: the
    ratio of the sums, so long runs weigh by their length; 1.0 without any."""
    estimated = sum(e for e, _ in finished)
    return sum(m for _, m in finished) / estimated if finished and estimated > 0 else 1.0


def time_left(remaining: Sequence[float], finished: Sequence[tuple[float, float]], jobs: int,
              done: int, total: int, elapsed: Sequence[float] = ()) -> TimeLeft:
    """The wall time a sweep has left.

    Args:
        remaining: the cost model's seconds (:func:`estimate_run_seconds`) of each run not
            finished yet, running or waiting.
        finished: ``(estimated, measured)`` seconds of every finished run with a measured wall
            time (this sweep's and, for a resumed sweep, those complete on disk): their ratio
            (:func:`calibration_ratio`) scales ``remaining``.
        jobs: runs executing in parallel; the calibrated seconds left are shared among them, and
            the time left is never below the longest single run left.
        done, total: runs finished (any outcome) and planned.
        elapsed: wall seconds each of the first ``len(elapsed)`` ``remaining`` runs has already
            been running (subtracted from its calibrated estimate, never below 0).
    """
    ratio = calibration_ratio(finished)
    waits = list(elapsed) + [0.0] * (len(remaining) - len(elapsed))
    left = [max(0.0, est * ratio - spent) for est, spent in zip(remaining, waits)]
    seconds = max(sum(left) / max(1, min(jobs, len(left))), max(left)) if left else 0.0
    return TimeLeft(done, total, seconds, ratio, len(finished), jobs)


__all__ = ["DATASET_CLASSES", "DATASET_IMAGES", "EVAL_SHARE", "MEASURED_EVERY", "ROUND_SECONDS", "SETUP_SECONDS",
           "TimeLeft", "calibration_ratio", "estimate_run_seconds", "format_duration", "time_left",
           "train_image_fraction", "uses_image_encoder"]
