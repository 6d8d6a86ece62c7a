"""One YAML -> one run folder: :func:`run_experiment`, and :func:`describe_run` for its sizes.

```python
from fedrs.experiment import describe_run, run_experiment
from fedrs.runs import load_run_config
cfg = load_run_config("params/offline/fedrsclip_ucmerced.yaml", {"train.rounds": 2})
describe_run(cfg, no_weights=True)["upload_values_per_client_round"]
metrics = run_experiment(cfg, "results/runs/x")      # the content of results/runs/x/metrics.json
```

Every run shares one preamble, whatever its task: the folder is checked against the request (a
finished run with the same parameters is reused, an interrupted one needs ``resume``, a file or an
unwritable path is refused), then params.yaml and env.json are written. A run that fails before
its first checkpoint leaves nothing behind (its files and the folders it created are removed); one
that fails later keeps its checkpoint for ``resume``. The method's task then picks the pipeline that fills the
folder (split.json through :meth:`fedrs.runs.RunFolder.write_split`, rounds.csv, clients.csv,
checkpoint.pt) and returns the metrics; metrics.json is written last, here, and marks the run
finished. ``classification`` is :func:`fedrs.classification.run_classification`; another task names
its pipeline in :data:`fedrs.methods.TASK_RUNNERS` (``retrieval``:
:func:`fedrs.retrieval.pipeline.run_retrieval`).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Callable

from fedrs.classification import run_classification
from fedrs.data.partition import num_base_classes
from fedrs.errors import FedrsError
from fedrs.federated.engine import FederatedEngine
from fedrs.io import write_json_atomic
from fedrs.methods import create_method, get_method_class, task_runner
from fedrs.runs import ENV, METRICS, PARAMS, RunConfig, RunFolder, write_env


def run_experiment(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
                   force: bool = False, datasets: list | None = None,
                   on_round: Callable[[int, dict], None] | None = None,
                   make_engine: Callable[..., FederatedEngine] | None = None) -> dict:
    """Run one configuration into ``out_dir`` and return its metrics (``fedrs run``, the notebooks).

    A finished run with the same parameters is not re-run (its metrics are returned) unless
    ``force``; an interrupted one continues with ``resume``. ``on_round(r, row)`` is called after
    every round. Classification only: ``datasets`` replaces loading from the data root (tests,
    custom data) and ``make_engine(method, clients, pooled_test, train, evaluation, checkpoint)``
    builds the engine (default :class:`~fedrs.federated.engine.FederatedEngine`; the Flower
    ServerApp passes its own).
    """
    started = time.perf_counter()
    runner = task_runner(get_method_class(cfg.method.name).task)
    if runner is None:
        runner = partial(run_classification, datasets=datasets,
                         make_engine=_checked_engine(make_engine or FederatedEngine, cfg))
    elif make_engine is not None:
        raise FedrsError(f"method {cfg.method.name!r} runs only on the in-process engine")
    folder = RunFolder(out_dir)
    kept = {name: (folder / name).read_bytes() for name in (PARAMS, ENV) if (folder / name).is_file()}
    if folder.prepare(cfg, resume=resume, force=force):
        return folder.read_metrics()
    try:
        write_env(folder)
        metrics = runner(cfg, folder, resume=resume, progress=progress, on_round=on_round, started=started)
        write_json_atomic(folder / METRICS, metrics)  # strict JSON: a NaN in the metrics fails the run here
    except BaseException as exc:
        folder.discard()
        if folder.status == "interrupted":  # a failed --resume leaves the run as it found it
            for name, content in kept.items():
                (folder / name).write_bytes(content)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(folder.path)  # a full disk reports no path: name the run's folder
        raise
    return metrics


def check_few_shot(clients, few_shot: int | None) -> None:
    """Refuse ``data.few_shot`` larger than what any client holds of any class: it would cut
    nothing, and a full-data run would be labelled "K-shot". ``clients``: the run's
    :class:`~fedrs.methods.base.ClientData` (their training indices after the few-shot cut)."""
    if few_shot is None or not clients:
        return
    import torch

    most = max((int(torch.bincount(c.labels[c.train_indices.to(c.labels.device)]).max())
                for c in clients if c.train_indices.numel()), default=0)
    if few_shot > most:
        raise FedrsError(f"data.few_shot={few_shot} is more than any client holds of a class (at most {most} "
                         f"images): the run would use all the data under a '{few_shot}-shot' label; set "
                         f"data.few_shot <= {most}, or drop few_shot for a full-data run")


def _checked_engine(make_engine: Callable[..., FederatedEngine], cfg: RunConfig) -> Callable[..., FederatedEngine]:
    """``make_engine`` after the checks that need the partition (:func:`check_few_shot`)."""

    def make(method, clients, *args, **kwargs) -> FederatedEngine:
        check_few_shot(clients, cfg.data.few_shot)
        return make_engine(method, clients, *args, **kwargs)

    return make


#: :func:`dataset_classnames` of a dataset the registry does not know (its classes come with its data)
UNKNOWN_CLASSES = ("scene",)


def dataset_classnames(data_cfg) -> list[str]:
    """Readable class names of the configured dataset(s) from the registry, without any data.

    The prompts are built for the real classes where the registry knows them (one placeholder,
    :data:`UNKNOWN_CLASSES`, otherwise), in the loaded data's label order (sorted), so that under
    ``data.class_split: base-to-novel`` the first half are the run's base classes.
    """
    from fedrs.data.partition import harmonised_classnames
    from fedrs.data.registry import AID_HOLDOUT, SceneDatasetSpec, find_spec, prompt_names

    def spec_of(name: str):
        spec = find_spec("AID" if name == AID_HOLDOUT else name)
        return spec if isinstance(spec, SceneDatasetSpec) else None

    if data_cfg.cross_domain:
        specs = [(n, spec_of(n)) for n in data_cfg.cross_domain]
        if all(s is not None for _, s in specs):
            return sorted(set().union(*(harmonised_classnames(n, list(s.classes), data_cfg.label_map)
                                        for n, s in specs)))
        return list(UNKNOWN_CLASSES)
    spec = spec_of(data_cfg.dataset)
    # label order: the loaded dataset's class names are sorted (the base classes are the first half)
    return prompt_names(spec, sorted(spec.classes)) if spec is not None else list(UNKNOWN_CLASSES)


#: ``describe`` lists the base and the novel class names when each side has at most this many
LISTED_CLASSES = 16


def class_split(classnames: list[str], num_base: int) -> dict:
    """``describe``'s base-to-novel fields: the classes the clients train and are tested on (the
    first ``num_base``) and the novel ones scored besides, as counts, and as names when both
    sides have at most :data:`LISTED_CLASSES`."""
    base, novel = classnames[:num_base], classnames[num_base:]
    out = {"class_split": "base-to-novel", "num_base_classes": len(base), "num_novel_classes": len(novel)}
    if max(len(base), len(novel)) <= LISTED_CLASSES:
        out.update({"base_classes": base, "novel_classes": novel})
    return out


def describe_run(cfg: RunConfig, no_weights: bool = False) -> dict:
    """Trainable parameters, uploaded tensors and their shapes, values per client and round.

    ``num_classes`` counts every class of the dataset; under ``data.class_split: base-to-novel``
    the method is built over the base classes only, as in the run, and the base and novel classes
    are given apart (:func:`class_split`). With ``no_weights`` the backbone is built with random
    weights (nothing is downloaded or read).
    """
    from fedrs.backbone.factory import create_backbone

    pretrained = "random" if no_weights else cfg.backbone.pretrained
    backbone = create_backbone(cfg.backbone.model, pretrained, cfg.backbone.device, strict=cfg.backbone.strict)
    classnames = dataset_classnames(cfg.data)
    known = classnames != list(UNKNOWN_CLASSES)
    split = {}
    base = len(classnames)
    if cfg.data.class_split == "base-to-novel":
        if known:
            base = num_base_classes(len(classnames))
            split = class_split(classnames, base)
        else:
            split = {"class_split": "base-to-novel (the first half of the classes in name order, rounded up: "
                                    "how many is known once the data is loaded)"}
    method = create_method(cfg.method, backbone, classnames[:base], seed=cfg.train.seed)  # as the run builds it
    out = {
        "backbone": f"{cfg.backbone.model}/{cfg.backbone.pretrained}",
        "built_with": backbone.label,
        "dataset": cfg.data.dataset,
        "num_classes": len(classnames),
        "num_clients": cfg.data.num_clients,
        # clients who never train; the global model is also scored on their test splits
        "unseen_clients": cfg.data.unseen_clients,
        **split,
        "clients_per_round": max(1, round(cfg.train.sample_fraction * cfg.data.num_clients)),
        "rounds": cfg.train.rounds,
        **method.describe(),
    }
    out["upload_values_total"] = out["upload_values_per_client_round"] * out["clients_per_round"] * cfg.train.rounds
    return out


__all__ = ["run_experiment", "describe_run", "class_split", "dataset_classnames", "check_few_shot", "LISTED_CLASSES",
           "UNKNOWN_CLASSES"]
