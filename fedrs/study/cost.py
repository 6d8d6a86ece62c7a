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
  images;
* the generalisation settings: base-to-novel (``data.class_split``) trains on the base classes'
  images only (the first ``ceil(C / 2)`` classes) but evaluates every class (base test images on
  base names, novel ones on novel names, each personalised and global), so its evaluation is a
  usual one; clients that never train (``data.unseen_clients`` U beside N training clients) take
  U / (N + U) of the training images out of training, and their test splits are scored by the
  global model besides the pooled test set, while the personalised evaluation covers only the
  training clients' test splits (:func:`evaluation_fraction`).

Configurations are the plain mappings of a params file (``yaml.safe_load``), so no run is built.
FedPGP's prior term is costed as a text-prompt round and a zero-shot run as evaluation only.

:func:`estimate_run_seconds` returns a :class:`RunEstimate`: the seconds, as a float, that know
the kind of run they cost (:func:`run_kind`: :data:`RUN_KINDS`). A sweep's time left
(:func:`time_left`) calibrates each kind on its own finished runs: the model's error differs by
kind (a real sweep measured its zero-shot runs at about 0.013 of their estimates, so one ratio
over every finished run said ~85 s left after 3 zero-shot runs of 64). A kind without a finished
run yet takes the ratio of the finished training runs, else 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from fedrs.data.partition import num_base_classes

#: CPU seconds of one core per round on Fed-UCMerced (10 clients, Dirichlet 0.5, 1,680 training
#: images), evaluation every round included, with exact text truncation: benchmarks/bench_round.py
#: (FedRSCLIP 8.25 s; PromptFL 0.75 s and text-only FedRSCLIP 1.48 s, so 1.1 s for text prompts;
#: FedOTP's transport over cached patch tokens 4.45 s). CPU time, so a loaded machine's wall
#: time is longer (the pilot's FedRSCLIP round took 33 s of wall time beside other jobs).
ROUND_SECONDS: dict[str, float] = {"image": 8.3, "text": 1.1, "transport": 4.5,
                                   # PE-RSITR (MRS-Adapter + HMMC through both towers) on UCM-Captions'
                                   # 1,512 training images with its validation split scored every
                                   # round: select_lr's one-client sweep, 4 rounds in 125 s of wall
                                   # time beside two other jobs on 2 cores (so about 25 s of one core)
                                   "retrieval": 25.0}
#: the evaluation cadence at which :data:`ROUND_SECONDS` was measured
MEASURED_EVERY = 1
#: share of a measured round spent evaluating (assumed: personalised + global scoring is about
#: 840 forward passes against 1,680 forward + backward passes of training)
EVAL_SHARE = 0.2
#: seconds of one core per run for setup on Fed-UCMerced (scaled by images)
SETUP_SECONDS = 20.0
#: images of the shipped datasets (the EuroSAT archive is a 6,000-image subset)
DATASET_IMAGES: dict[str, int] = {"UCMerced": 2100, "RSSCN7": 2800, "EuroSAT": 6000, "AID-holdout": 1027,
                                  "AID": 10000, "UCM-Captions": 2100, "RSICD": 10000}
#: classes of the shipped datasets (for the few-shot cap)
DATASET_CLASSES: dict[str, int] = {"UCMerced": 21, "RSSCN7": 7, "EuroSAT": 10, "AID-holdout": 30, "AID": 30}
#: the dataset of the measurement
REFERENCE_DATASET = "UCMerced"
#: the kinds of run the cost model tells apart (:func:`run_kind`), in display order: training
#: through the image encoder, text prompts on cached image features, FedOTP's transport, zero-shot
#: (evaluation only). A sweep calibrates each on its own finished runs.
RUN_KINDS: tuple[str, ...] = ("image", "text", "transport", "retrieval", "zeroshot")
#: how the time left names each kind
KIND_LABELS: dict[str, str] = {"image": "image encoder", "text": "text prompts", "transport": "transport",
                               "retrieval": "retrieval", "zeroshot": "zero-shot"}
#: the kinds whose calibration stands in for a kind without a finished run: the training runs
#: (a zero-shot run only evaluates, so its ratio says nothing of a training round)
TRAINING_KINDS: tuple[str, ...] = ("image", "text", "transport", "retrieval")


def uses_image_encoder(method: Mapping[str, Any]) -> bool:
    """Whether training runs the image encoder (visual prompts) rather than cached features."""
    name = method.get("name")
    if name in ("fedrsclip", "fedrsclip-local", "centralised"):
        return method.get("visual_prompts", True) is not False
    if name == "promptfl":
        return int(method.get("visual_tokens") or 0) > 0
    return False


def run_kind(cfg: Mapping[str, Any]) -> str:
    """The kind of run (:data:`RUN_KINDS`) of a plain params mapping: ``zeroshot`` (no training),
    ``retrieval`` (PE-RSITR), ``image`` (:func:`uses_image_encoder`), ``transport`` (FedOTP with
    optimal transport), else ``text``."""
    method = cfg.get("method", {})
    if method.get("name") == "zeroshot":
        return "zeroshot"
    if method.get("name") == "pe-rsitr":
        return "retrieval"
    if uses_image_encoder(method):
        return "image"
    if method.get("name") == "fedotp" and method.get("matching", "ot") == "ot":
        return "transport"
    return "text"


class RunEstimate(float):
    """Seconds of one core that a run costs (a float, so sums and comparisons work as ever) and
    the kind of run it is (:func:`run_kind`), which :func:`time_left` calibrates by. Arithmetic
    gives a plain float."""

    __slots__ = ("kind",)
    kind: str

    def __new__(cls, seconds: float, kind: str) -> RunEstimate:
        obj = super().__new__(cls, seconds)
        obj.kind = kind
        return obj

    def __reduce__(self):
        return (RunEstimate, (float(self), self.kind))

    def __repr__(self) -> str:
        return f"RunEstimate({float(self)!r}, {self.kind!r})"


def kind_of(seconds: float) -> str | None:
    """The kind of run of an estimate (:class:`RunEstimate`); None for a plain number."""
    return getattr(seconds, "kind", None)


def _datasets(data: Mapping[str, Any]) -> list[str]:
    return list(data.get("cross_domain") or [data.get("dataset", REFERENCE_DATASET)])


def _images(names: list[str]) -> int:
    return sum(DATASET_IMAGES.get(n, DATASET_IMAGES[REFERENCE_DATASET]) for n in names)


def _classes(name: str) -> int:
    return DATASET_CLASSES.get(name, DATASET_CLASSES[REFERENCE_DATASET])


def _unseen_share(data: Mapping[str, Any]) -> float:
    """The share U / (N + U) of the partition that clients who never train hold (0 without)."""
    clients, unseen = int(data.get("num_clients", 10)), int(data.get("unseen_clients") or 0)
    return unseen / (clients + unseen) if unseen > 0 else 0.0


def base_class_fraction(data: Mapping[str, Any]) -> float:
    """The share of a dataset's images in the classes that train: ``ceil(C / 2) / C`` under
    ``class_split: base-to-novel`` (:func:`fedrs.data.partition.num_base_classes`; the shipped
    datasets have about as many images per class), else 1."""
    if data.get("class_split", "all") != "base-to-novel":
        return 1.0
    classes = _classes(_datasets(data)[0])
    return num_base_classes(classes) / classes


def train_image_fraction(cfg: Mapping[str, Any]) -> float:
    """Training images of one round relative to all training images of the configured data:
    the training clients' share (without the base-to-novel protocol's novel classes and the
    clients that never train), a few-shot cap (an upper bound: K images per class and client),
    the sampled fraction of clients, and the matched-step reference's one average client's steps."""
    data, train, method = cfg.get("data", {}), cfg.get("train", {}), cfg.get("method", {})
    clients = int(data.get("num_clients", 10))
    share = base_class_fraction(data) * (1.0 - _unseen_share(data))
    shots = data.get("few_shot")
    if shots:
        names = _datasets(data)
        n_train = (1 - float(data.get("test_fraction", 0.2))) * _images(names)
        classes = sum(_classes(n) for n in names) * base_class_fraction(data)
        share = min(share, int(shots) * classes * clients / len(names) / n_train)
    fraction = share * float(train.get("sample_fraction", 1.0))
    if method.get("name") == "centralised" and method.get("steps_per_round") == "matched":
        fraction /= clients
    return fraction


def evaluation_fraction(cfg: Mapping[str, Any]) -> float:
    """One evaluation relative to the measured one, which scores every client's test split with
    its own model (personalised) and the pooled test set with the global model, about as many
    images each (disjoint client test splits cover the pool), so half of the work each.

    Clients that never train (share u = U / (N + U)) hold u of the client test images: the
    personalised half shrinks to 1 - u, and the global model scores their test splits besides the
    pooled test set (+ u), so the whole stays 1. Base-to-novel scores the base test images (b) and
    the novel ones (1 - b) each personalised and global: 1 as well. The function states the
    model so that either term can be re-measured on its own."""
    data = cfg.get("data", {})
    unseen = _unseen_share(data)
    base = base_class_fraction(data)
    novel = 1.0 - base  # base-to-novel: the novel test images, scored personalised and global too
    personalised = (base + novel) * (1.0 - unseen)
    global_ = (base + novel) + unseen  # the pooled test set, + the global model on the unseen clients' splits
    return (personalised + global_) / 2


def estimate_run_seconds(cfg: Mapping[str, Any], done_rounds: int = 0) -> RunEstimate:
    """Seconds of one core that the run of the plain params mapping ``cfg`` takes (an estimate,
    of its :func:`run_kind`); ``done_rounds``: rounds an interrupted run has already finished (its
    resume pays the setup again, then only the rounds left)."""
    data, train = cfg.get("data", {}), cfg.get("train", {})
    scale = _images(_datasets(data)) / DATASET_IMAGES[REFERENCE_DATASET]
    rounds = int(train.get("rounds", 10))
    every = int(cfg.get("eval", {}).get("every", 1))
    kind = run_kind(cfg)
    round_s = ROUND_SECONDS["text" if kind == "zeroshot" else kind]  # zero-shot: scoring as text prompts do
    train_s = 0.0 if kind == "zeroshot" else round_s * (1 - EVAL_SHARE) * train_image_fraction(cfg)
    eval_s = round_s * EVAL_SHARE * MEASURED_EVERY * evaluation_fraction(cfg)  # one evaluation
    done = min(max(0, int(done_rounds)), rounds)
    evaluations = rounds // every + 1 + (rounds % every != 0)  # round 0, every k-th, the last
    if done:
        evaluations = max(0, evaluations - 1 - done // every)  # round 0's and the k-th rounds' are done
    return RunEstimate(scale * (SETUP_SECONDS + (rounds - done) * train_s + evaluations * eval_s), kind)


# --- a sweep's time left ------------------------------------------------------------------------

@dataclass(frozen=True)
class KindCalibration:
    """The calibration of one kind of run (:data:`RUN_KINDS`; None: estimates without a kind)."""

    kind: str | None
    ratio: float   #: measured over estimated seconds of its finished runs (the fallback's without any)
    runs: int      #: its finished runs (0: ``ratio`` is the fallback)

    def text(self) -> str:
        """``image encoder x1.3 (5 runs)``; ``zero-shot x1 (no run yet)``."""
        name = KIND_LABELS.get(self.kind, "other") if self.kind else "other"
        runs = f"{self.runs} run{'s' if self.runs != 1 else ''}" if self.runs else "no run yet"
        return f"{name} x{self.ratio:.2g} ({runs})"


@dataclass(frozen=True)
class TimeLeft:
    """A sweep's progress and the wall time it has left.

    ``seconds``: wall seconds until the last run ends (each run left's estimate times the ratio
    of its kind, shared by ``jobs`` parallel runs); ``ratio``: measured wall seconds over
    estimated seconds of all ``calibrated_on`` finished runs (1.0, uncalibrated, before any);
    ``by_kind``: the ratio each kind of run, finished or left, was scaled by (:func:`time_left`)."""

    done: int
    total: int
    seconds: float
    ratio: float = 1.0
    calibrated_on: int = 0
    jobs: int = 1
    by_kind: tuple[KindCalibration, ...] = field(default=(), compare=False)

    def _one_ratio(self) -> bool:
        """Whether one ratio scaled every run: a single kind, calibrated on its own runs."""
        return len(self.by_kind) <= 1 and all(k.runs for k in self.by_kind)

    def basis(self) -> str:
        """What the estimate rests on: ``estimate x1.3 calibrated on 12 runs``, ``uncalibrated
        estimate``, or per kind: ``estimate calibrated per kind of run on 12 runs: image encoder
        x1.3 (5 runs), text prompts x0.9 (4 runs), zero-shot x0.013 (3 runs)``."""
        if not self.calibrated_on:
            return "uncalibrated estimate"
        runs = f"{self.calibrated_on} run{'s' if self.calibrated_on != 1 else ''}"
        if self._one_ratio():
            return f"estimate x{self.ratio:.2g} calibrated on {runs}"
        return f"estimate calibrated per kind of run on {runs}: {', '.join(k.text() for k in self.by_kind)}"

    def text(self) -> str:
        """``12/48 runs done, ~37 min left (estimate x1.3 calibrated on 12 runs)``."""
        head = f"{self.done}/{self.total} runs done"
        return head if self.done >= self.total else f"{head}, {self.left_text()}"

    def left_text(self) -> str:
        """``~37 min left (estimate x1.3 calibrated on 12 runs)``."""
        return f"~{format_duration(self.seconds)} left ({self.basis()})"

    def calibration_text(self) -> str:
        """``measured x1.3 the cost model's estimate over 12 runs`` (+ per kind when the kinds
        differ), or that no run was measured."""
        if not self.calibrated_on:
            return "no run with a measured wall time to calibrate the cost model on"
        text = (f"measured x{self.ratio:.2g} the cost model's estimate over {self.calibrated_on} "
                f"run{'s' if self.calibrated_on != 1 else ''}")
        measured = [k for k in self.by_kind if k.runs]
        return text if len(measured) <= 1 else f"{text} ({', '.join(k.text() for k in measured)})"

    def to_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "seconds_left": round(self.seconds, 1),
                "ratio": round(self.ratio, 4), "calibrated_on": self.calibrated_on, "jobs": self.jobs,
                "by_kind": {k.kind or "other": {"ratio": round(k.ratio, 4), "runs": k.runs} for k in self.by_kind}}


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


def _kind_order(kind: str | None) -> tuple[int, str]:
    return (RUN_KINDS.index(kind), "") if kind in RUN_KINDS else (len(RUN_KINDS), str(kind))


def calibrate(finished: Sequence[tuple[float, float]], kinds: Sequence[str | None] = ()) -> \
        tuple[KindCalibration, ...]:
    """The calibration of each kind of run (:func:`kind_of` of the estimates) among ``finished``
    ``(estimated, measured)`` pairs and ``kinds`` (those of the runs left), in :data:`RUN_KINDS`
    order: a kind with finished runs by its own :func:`calibration_ratio`; one without by the
    ratio of the finished training runs (:data:`TRAINING_KINDS`, and estimates without a kind),
    else 1.0."""
    groups: dict[str | None, list[tuple[float, float]]] = {}
    for pair in finished:
        groups.setdefault(kind_of(pair[0]), []).append(pair)
    training = [pair for kind, pairs in groups.items() if kind is None or kind in TRAINING_KINDS for pair in pairs]
    fallback = calibration_ratio(training)
    every = sorted(set(groups) | set(kinds), key=_kind_order)
    return tuple(KindCalibration(k, calibration_ratio(groups[k]), len(groups[k])) if k in groups
                 else KindCalibration(k, fallback, 0) for k in every)


def time_left(remaining: Sequence[float], finished: Sequence[tuple[float, float]], jobs: int,
              done: int, total: int, elapsed: Sequence[float] = ()) -> TimeLeft:
    """The wall time a sweep has left.

    Args:
        remaining: the cost model's seconds (:func:`estimate_run_seconds`) of each run not
            finished yet, running or waiting.
        finished: ``(estimated, measured)`` seconds of every finished run with a measured wall
            time (this sweep's and, for a resumed sweep, those complete on disk): each run left
            is scaled by the ratio of its kind (:func:`calibrate`: the finished runs of that kind,
            else those of the training kinds, else 1.0). Plain numbers (no :class:`RunEstimate`)
            are one kind: one ratio over every finished run.
        jobs: runs executing in parallel; the calibrated seconds left are shared among them, and
            the time left is never below the longest single run left.
        done, total: runs finished (any outcome) and planned.
        elapsed: wall seconds each of the first ``len(elapsed)`` ``remaining`` runs has already
            been running (subtracted from its calibrated estimate, never below 0).
    """
    by_kind = calibrate(finished, [kind_of(est) for est in remaining])
    ratios = {k.kind: k.ratio for k in by_kind}
    waits = list(elapsed) + [0.0] * (len(remaining) - len(elapsed))
    left = [max(0.0, float(est) * ratios[kind_of(est)] - spent) for est, spent in zip(remaining, waits)]
    seconds = max(sum(left) / max(1, min(jobs, len(left))), max(left)) if left else 0.0
    return TimeLeft(done, total, seconds, calibration_ratio(finished), len(finished), jobs, by_kind)


__all__ = ["DATASET_CLASSES", "DATASET_IMAGES", "EVAL_SHARE", "KIND_LABELS", "KindCalibration", "MEASURED_EVERY",
           "ROUND_SECONDS", "RUN_KINDS", "RunEstimate", "SETUP_SECONDS", "TRAINING_KINDS", "TimeLeft",
           "base_class_fraction", "calibrate", "calibration_ratio", "estimate_run_seconds", "evaluation_fraction",
           "format_duration", "kind_of", "run_kind", "time_left", "train_image_fraction", "uses_image_encoder"]
