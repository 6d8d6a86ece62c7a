"""Clients that bring their own data: the run's label space, a client's own split, and the run.

In a real cross-silo federation every institution holds only its own images and the server holds
none. A SuperNode is pointed at its own data through its node config (``data-dir``: a data root
on its machine, where ``fedrs data import PATH [--name NAME] --root DIR`` put the dataset;
``dataset``: its name there, optional when the root holds one scene dataset) and the run's
app config says ``client-data = "own"``. Then, on each SuperNode:

* the class list of its dataset is matched against the run's **label space**
  (:class:`LabelSpace`, sent by the server with every message): each class folder must name one
  class of the run (by its readable name, its harmonised cross-domain name, its folder name or a
  spelling the label space lists; case and separators ignored). A client may hold a subset; a
  class the run does not know is an error naming it (and the classes the client lacks);
* its own train/test split is built locally by the Fed-RSIC splitter's stratified pooled split
  (:func:`fedrs.data.partition.build_partition` with one client: per class
  ``round(test_fraction * n_c)`` test images, exact duplicates on one side, seeded by
  ``data.seed``; ``few_shot`` keeps at most K training images per class). The client never sees
  a global partition; ``data.scheme``, ``alpha``, ... do not apply.

The server needs no data: global accuracy is measured by **federated evaluation** (every client
scores the global shared tensors on its own test split and replies with counts; the global
accuracy is the sum of correct over the sum of scored images, i.e. accuracy on the union of the
clients' test splits), and, only if the operator gives a validation dataset on the server's
machine, on it too (``validation_acc``).

:func:`run_own_data` is that run for any engine: :func:`own_data_clients` builds the clients of
several datasets in one process (one shared pool, each client's indices into its own part), so
the in-process engine runs exactly what a deployment of one SuperNode per dataset runs, and the
two give the same run folder (the loopback test checks it).

The label space comes from the registry when ``data.dataset`` (or every ``data.cross_domain``
dataset) is a registered one (the same class names and order as a partitioned run), else from a
classes file: one class per line, ``name`` or ``name | spelling | spelling ...``; ``#`` comments.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from fedrs.config import ConfigError
from fedrs.errors import DataError
from fedrs.methods.base import ClientData, Method
from fedrs.runs import CLIENTS, METRICS, ROUNDS, RunConfig, RunFolder, write_env

logger = logging.getLogger(__name__)

#: node config keys of a SuperNode with its own data
DATA_DIR, DATASET = "data-dir", "dataset"
#: ``client-data`` values: the partition of one dataset (studies, simulation) or each node's own data
PARTITION, OWN = "partition", "own"
SPLIT_FORMAT = "fedrs-own-data"


# --- the run's label space ------------------------------------------------------------------------

def _key(name: str) -> str:
    from fedrs.data.registry import normalise

    return normalise(name)


@dataclass(frozen=True)
class LabelSpace:
    """The run's classes: ``names[i]`` is label ``i`` (the readable names the prompts use);
    ``spellings[i]`` other names a client's class folder may carry for it (folder names)."""

    names: tuple[str, ...]
    spellings: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("the run's label space is empty")
        if len({_key(n) for n in self.names}) != len(self.names):
            raise ConfigError(f"the run's label space names a class twice (ignoring case and separators): "
                              f"{list(self.names)}")
        if not self.spellings:
            object.__setattr__(self, "spellings", tuple(() for _ in self.names))
        if len(self.spellings) != len(self.names):
            raise ConfigError("the label space needs one tuple of spellings per class")

    def lookup(self) -> dict[str, int]:
        """normalised name or spelling -> label; a spelling claimed by two classes is left out
        (only the class's own name then matches), a name always wins over a spelling."""
        found: dict[str, set[int]] = {}
        for i, extra in enumerate(self.spellings):
            for s in extra:
                found.setdefault(_key(s), set()).add(i)
        table = {k: next(iter(v)) for k, v in found.items() if len(v) == 1 and k}
        table.update({_key(n): i for i, n in enumerate(self.names)})
        return table

    def to_json(self) -> str:
        return json.dumps([[n, *s] for n, s in zip(self.names, self.spellings)])

    @classmethod
    def from_json(cls, text: str) -> LabelSpace:
        rows = json.loads(text)
        return cls(tuple(r[0] for r in rows), tuple(tuple(r[1:]) for r in rows))

    @classmethod
    def from_file(cls, path: str | Path) -> LabelSpace:
        """A classes file: one class per line, ``name`` or ``name | spelling | ...``; ``#`` comments."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"classes file {path}: cannot be read ({exc})") from exc
        rows = [[p.strip() for p in line.split("#", 1)[0].split("|")] for line in lines]
        rows = [[p for p in r if p] for r in rows]
        rows = [r for r in rows if r]
        if not rows:
            raise ConfigError(f"classes file {path} lists no class (one per line: name | spelling ...)")
        return cls(tuple(r[0] for r in rows), tuple(tuple(r[1:]) for r in rows))


def run_label_space(cfg: RunConfig, classes_file: str | Path | None = None) -> LabelSpace:
    """The label space of a run whose clients bring their own data: ``classes_file`` if given,
    else the registry's classes of ``data.dataset`` (or the harmonised union of the
    ``data.cross_domain`` datasets), in the order a partitioned run of them uses."""
    from fedrs.data.partition import harmonised_classnames
    from fedrs.data.registry import AID_HOLDOUT, SceneDatasetSpec, prompt_names, registry_spec

    if classes_file:
        return LabelSpace.from_file(classes_file)
    data = cfg.data
    names = data.cross_domain or [data.dataset]
    specs = [(n, registry_spec("AID" if _key(n) == _key(AID_HOLDOUT) else n)) for n in names]
    unknown = [n for n, s in specs if not isinstance(s, SceneDatasetSpec)]
    if unknown:
        raise ConfigError(f"the server holds no data, so it cannot read the classes of {unknown} (not a registered "
                          f"scene dataset): give the run's classes in a file, one per line (flwr run --run-config "
                          f"\"classes='/abs/classes.txt'\", or fedrs flower local/submit --classes FILE)")
    if not data.cross_domain:
        spec = specs[0][1]
        return LabelSpace(tuple(prompt_names(spec, list(spec.classes))), tuple((c,) for c in spec.classes))
    folders: dict[str, list[str]] = {}
    for n, spec in specs:
        for folder, name in zip(spec.classes, harmonised_classnames(n, list(spec.classes), data.label_map)):
            folders.setdefault(name, []).append(folder)
    ordered = sorted(folders)  # the harmonised partition's order
    return LabelSpace(tuple(ordered), tuple(tuple(dict.fromkeys(folders[n])) for n in ordered))


def match_classes(dataset, space: LabelSpace, label_map=None) -> np.ndarray:
    """``[C_own]``: the run's label of each class of ``dataset``; an error names every class the
    run does not know (and, for information, the run's classes this dataset lacks)."""
    from fedrs.data.partition import harmonised_classnames
    from fedrs.data.registry import readable_classname

    table = space.lookup()
    harmonised = harmonised_classnames(dataset.name, list(dataset.classnames), label_map)
    out, unknown = [], []
    for c, folder in enumerate(dataset.classnames):
        candidates = (harmonised[c], dataset.prompt_names[c], readable_classname(folder), folder)
        label = next((table[_key(x)] for x in candidates if _key(x) in table), None)
        if label is None:
            unknown.append(folder)
        out.append(label)
    if unknown:
        lacking = sorted(set(space.names) - {space.names[i] for i in out if i is not None})
        raise DataError(f"{dataset.name}: class folder(s) {unknown} are not classes of this run, whose label space "
                        f"is {list(space.names)}"
                        + (f" (this dataset lacks {lacking}, which is fine)" if lacking else "")
                        + ": rename the folders, leave those classes out, or ask the operator to add them")
    labels = np.asarray(out, dtype=np.int64)
    if len(set(labels.tolist())) != len(labels):
        twice = [space.names[i] for i in sorted(set(labels.tolist())) if (labels == i).sum() > 1]
        raise DataError(f"{dataset.name}: several class folders map to the same class of the run: {twice}: merge them")
    return labels


def missing_classes(dataset, space: LabelSpace, label_map=None) -> list[str]:
    """The run's classes that ``dataset`` does not hold (a client may hold a subset)."""
    held = set(match_classes(dataset, space, label_map).tolist())
    return [n for i, n in enumerate(space.names) if i not in held]


# --- one client's own data ---------------------------------------------------------------------------

def load_node_dataset(data_dir: str | Path, name: str | None = None):
    """The scene dataset ``name`` imported in the data root ``data_dir`` (the only one when
    ``name`` is empty)."""
    from fedrs.data import load_scene_dataset
    from fedrs.data.registry import CaptionSetSpec, find_spec, imported_names

    root = Path(data_dir).expanduser()
    if not root.is_absolute() or not root.is_dir():
        raise DataError(f"data-dir {data_dir} is not an absolute path to a folder: point the SuperNode at the "
                        f"data root its dataset was imported into (fedrs data import PATH --name NAME --root DIR)")
    if not name:
        scenes = [n for n in imported_names(root) if not isinstance(find_spec(n, root), CaptionSetSpec)]
        if len(scenes) != 1:
            what = f"several scene datasets ({', '.join(scenes)})" if scenes else "no imported dataset"
            raise DataError(f"{root} holds {what}: "
                            + ("name one with --dataset NAME (node config dataset=NAME)" if scenes else
                               "import yours first: fedrs data import PATH --name NAME --root " + str(root)))
        name = scenes[0]
    return load_scene_dataset(name, root)


@dataclass
class OwnClientSplit:
    """One client's own split: indices into the run's pool (its own dataset's part)."""

    client_id: int
    dataset: str
    train_indices: list[int]
    test_indices: list[int]
    missing: list[str] = field(default_factory=list)


@dataclass
class OwnDataSplit:
    """The clients of a run with own data, shaped as :func:`fedrs.classification.build_clients`
    and :func:`fedrs.classification.summarise` read a partition: ``labels`` (the run's label of
    every pool image, datasets concatenated in client order) and one split per client."""

    dataset: str
    space: LabelSpace
    labels: np.ndarray
    clients: list[OwnClientSplit]
    test_fraction: float
    seed: int

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def test_indices(self) -> list[int]:
        """The union of the clients' test splits, in client order: what global accuracy scores."""
        return [i for c in self.clients for i in c.test_indices]

    def to_json(self) -> str:
        """split.json of a run with own data: what the server may know (sizes, not images)."""
        return json.dumps({
            "format": SPLIT_FORMAT, "dataset": self.dataset, "classnames": list(self.space.names),
            "test_fraction": self.test_fraction, "seed": self.seed,
            "clients": [{"client": c.client_id, "train_examples": len(c.train_indices),
                         "test_examples": len(c.test_indices)} for c in self.clients],
        }, indent=1)


def own_split(datasets: Sequence, client_ids: Sequence[int], space: LabelSpace, cfg: RunConfig) -> OwnDataSplit:
    """Each dataset's own stratified train/test split (the Fed-RSIC pooled split, seeded by
    ``data.seed``), labels mapped to ``space``; one client per dataset, ids ``client_ids``."""
    from fedrs.data.partition import PartitionConfig, build_partition

    labels, clients, offset = [], [], 0
    for ds, cid in zip(datasets, client_ids, strict=True):
        mapping = match_classes(ds, space, cfg.data.label_map)
        own = PartitionConfig(dataset=ds.name, num_clients=1, scheme="iid", few_shot=cfg.data.few_shot,
                              test_fraction=cfg.data.test_fraction, seed=cfg.data.seed)
        part = build_partition(ds.labels, ds.classnames, own, content_hashes=list(ds.hashes) or None)
        train, test = part.clients[0].train_indices, part.test_indices
        lacking = [n for i, n in enumerate(space.names) if i not in set(mapping.tolist())]
        clients.append(OwnClientSplit(cid, ds.name, [i + offset for i in train], [i + offset for i in test], lacking))
        labels.append(mapping[np.asarray(ds.labels, dtype=np.int64)])
        offset += len(ds)
    return OwnDataSplit(cfg.data.dataset, space, np.concatenate(labels), clients, cfg.data.test_fraction,
                        cfg.data.seed)


def build_method(cfg: RunConfig, space: LabelSpace):
    """The backbone and the method over ``space`` (as :func:`fedrs.classification.prepare_run`)."""
    from fedrs.backbone.factory import create_backbone
    from fedrs.methods import create_method, get_method_class, task_runner
    from fedrs.prompts import set_tower_precision

    cls = get_method_class(cfg.method.name)
    if task_runner(cls.task) is not None:
        raise ConfigError(f"method {cfg.method.name!r} ({cls.task}) runs only on the in-process engine; clients "
                          f"with their own data run scene classification methods")
    if cls.pools_data:
        raise ConfigError(f"method {cfg.method.name!r} pools every client's data in one party, which clients that "
                          f"keep their own data never do")
    backbone = create_backbone(cfg.backbone.model, cfg.backbone.pretrained, cfg.backbone.device,
                               strict=cfg.backbone.strict)
    method = create_method(cfg.method, backbone, list(space.names), seed=cfg.train.seed)
    set_tower_precision(method.module, cfg.train.precision)
    return backbone, method


def own_data_clients(method: Method, backbone, datasets: Sequence, client_ids: Sequence[int],
                     space: LabelSpace, cfg: RunConfig, progress: bool = False
                     ) -> tuple[list[ClientData], torch.Tensor, OwnDataSplit]:
    """Client views of ``datasets`` (one client each, ids ``client_ids``) over one shared pool,
    the union of their test splits (pool indices) and the split."""
    from fedrs.classification import build_clients

    split = own_split(datasets, client_ids, space, cfg)
    clients, pooled_test = build_clients(method, backbone, list(datasets), split, cfg.train, progress)
    return clients, pooled_test, split


def validation_data(method: Method, backbone, dataset, space: LabelSpace, cfg: RunConfig) -> ClientData:
    """A server-side validation dataset as one data view whose test split is every image."""
    from fedrs.classification import build_clients

    labels = match_classes(dataset, space, cfg.data.label_map)[np.asarray(dataset.labels, dtype=np.int64)]
    split = OwnDataSplit(dataset.name, space, labels,
                         [OwnClientSplit(-1, dataset.name, [], list(range(len(dataset))))], 1.0, cfg.data.seed)
    return build_clients(method, backbone, [dataset], split, cfg.train, False)[0][0]


def placeholder_clients(n: int) -> list[ClientData]:
    """``n`` data views without data: what the server of a deployment knows of its clients (their
    ids); the engine that runs with them never trains or scores locally."""
    empty = torch.zeros(0, dtype=torch.long)
    return [ClientData(k, empty, empty, empty) for k in range(n)]


# --- the run -------------------------------------------------------------------------------------------

#: leading columns of rounds.csv / clients.csv (as in a partitioned run, plus validation_acc)
def _round_columns() -> tuple[str, ...]:
    from fedrs.classification import ROUND_COLUMNS

    return ROUND_COLUMNS[:7] + ("validation_acc",) + ROUND_COLUMNS[7:]


def run_own_data(cfg: RunConfig, out_dir: str | Path, make_engine: Callable[..., object], *,
                 space: LabelSpace, clients: list[ClientData], pooled_test: torch.Tensor,
                 split: Callable[[object], OwnDataSplit], backbone, method: Method, force: bool = False,
                 progress: bool = False, on_round: Callable[[int, dict], None] | None = None,
                 started: float | None = None) -> dict:
    """Run ``cfg`` with clients that hold their own data into ``out_dir`` and return metrics.json.

    ``make_engine(method, clients, pooled_test, train, evaluation, checkpoint)`` builds the engine
    (the in-process engine over :func:`own_data_clients`, or the Flower engine over
    :func:`placeholder_clients`); ``split(engine)`` gives split.json's content after the rounds.
    No checkpoint (a Flower run has none; resume is not offered). The run folder is the same as a
    partitioned run's; split.json holds only what the server may know (format ``fedrs-own-data``),
    metrics.json says ``"client_data": "own"`` and has no zero-shot reference (it would need the
    clients' images on the server).
    """
    from fedrs.classification import summarise
    from fedrs.federated.dp import privacy_summary
    from fedrs.io import write_json_atomic

    if cfg.data.unseen_clients or cfg.data.class_split != "all":  # both are ways to partition a pool
        raise ConfigError("data.unseen_clients and data.class_split need a partitioned run (clients with their "
                          "own data are not partitioned by the server): drop them")
    started = time.perf_counter() if started is None else started
    folder = RunFolder(out_dir)
    if folder.prepare(cfg, resume=False, force=force):
        return folder.read_metrics()
    write_env(folder)
    engine = make_engine(method, clients, pooled_test, cfg.train, cfg.eval, None, privacy=cfg.privacy)
    setup_s = time.perf_counter() - started
    columns = _round_columns()

    def after_round(r: int, row: dict) -> None:
        folder.write_csv(ROUNDS, engine.history, columns)
        if on_round is not None:
            on_round(r, row)

    history = engine.run(progress=progress, on_round=after_round)
    folder.write_csv(ROUNDS, history, columns)
    folder.write_csv(CLIENTS, engine.client_rows, columns)
    own = split(engine)
    folder.write_split(own.to_json(), resume=False)
    metrics = summarise(cfg, method, backbone, own, history, {}, engine.elapsed)
    metrics.update(engine=engine.name, client_data=OWN, setup_time_s=setup_s, wall_time_s=setup_s + engine.elapsed,
                   privacy=privacy_summary(cfg.privacy, history))
    final = next(r for r in reversed(history) if "global_acc" in r)
    if "validation_acc" in final:
        metrics["validation_accuracy"] = final["validation_acc"]
    write_json_atomic(folder / METRICS, metrics)
    return metrics


def run_own_data_inprocess(cfg: RunConfig, out_dir: str | Path, datasets: Sequence, *,
                           classes_file: str | Path | None = None, force: bool = False,
                           progress: bool = False, make_engine: Callable[..., object] | None = None) -> dict:
    """The in-process engine over clients that each hold one of ``datasets`` (client ``i``: the
    ``i``-th), exactly what a deployment of one SuperNode per dataset runs."""
    from fedrs.federated.engine import FederatedEngine

    started = time.perf_counter()
    if len(datasets) != cfg.data.num_clients:
        raise ConfigError(f"data.num_clients={cfg.data.num_clients} but {len(datasets)} client datasets were given")
    space = run_label_space(cfg, classes_file)
    backbone, method = build_method(cfg, space)
    clients, pooled_test, split = own_data_clients(method, backbone, datasets, range(len(datasets)), space, cfg,
                                                   progress)
    return run_own_data(cfg, out_dir, make_engine or FederatedEngine, space=space, clients=clients,
                        pooled_test=pooled_test, split=lambda engine: split, backbone=backbone, method=method,
                        force=force, progress=progress, started=started)


def server_split(cfg: RunConfig, space: LabelSpace, sizes: dict[int, tuple[int, int]]) -> OwnDataSplit:
    """split.json of a deployment from the sizes the clients reported: ``{client: (train, test)}``."""
    clients = [OwnClientSplit(k, "", list(range(n_train)), list(range(n_test)))
               for k, (n_train, n_test) in sorted(sizes.items())]
    return OwnDataSplit(cfg.data.dataset, space, np.zeros(0, dtype=np.int64), clients, cfg.data.test_fraction,
                        cfg.data.seed)


__all__ = [
    "DATA_DIR", "DATASET", "PARTITION", "OWN", "LabelSpace", "run_label_space", "match_classes", "missing_classes",
    "load_node_dataset", "OwnClientSplit", "OwnDataSplit", "own_split", "build_method", "own_data_clients",
    "validation_data", "placeholder_clients", "run_own_data", "run_own_data_inprocess", "server_split",
]
