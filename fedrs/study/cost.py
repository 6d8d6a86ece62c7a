"""What a run of the study costs, estimated from measured round times before it runs.

``params/make_studies.py --estimate`` sums :func:`estimate_run_seconds` over a tier's params
files; a sweep can use it for the time left. The model is deliberately simple and its constants
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

from typing import Any, Mapping

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


def estimate_run_seconds(cfg: Mapping[str, Any]) -> float:
    """Seconds of one core that the run of the plain params mapping ``cfg`` takes (an estimate)."""
    data, train, method = cfg.get("data", {}), cfg.get("train", {}), cfg.get("method", {})
    scale = _images(_datasets(data)) / DATASET_IMAGES[REFERENCE_DATASET]
    rounds = int(train.get("rounds", 10))
    every = int(cfg.get("eval", {}).get("every", 1))
    kind = ("image" if uses_image_encoder(method)
            else "transport" if method.get("name") == "fedotp" and method.get("matching", "ot") == "ot"
            else "text")
    round_s = ROUND_SECONDS[kind]
    train_s = 0.0 if method.get("name") == "zeroshot" else round_s * (1 - EVAL_SHARE) * train_image_fraction(cfg)
    evaluations = rounds // every + 1 + (rounds % every != 0)  # round 0, every k-th, the last
    eval_s = round_s * EVAL_SHARE * MEASURED_EVERY  # one evaluation
    return scale * (SETUP_SECONDS + rounds * train_s + evaluations * eval_s)


__all__ = ["DATASET_CLASSES", "DATASET_IMAGES", "EVAL_SHARE", "MEASURED_EVERY", "ROUND_SECONDS", "SETUP_SECONDS",
           "estimate_run_seconds", "train_image_fraction", "uses_image_encoder"]
