"""Fed-RSIC: federated splits of scene-classification datasets.

The builder works on labels and class names only (no files), in three stages, each with its own
child generator of ``numpy.random.default_rng`` seeded from ``(seed, stage)``:

1. **Stratified train/test split**, per class: ``round(test_fraction * n_c)`` images of class ``c``
   (at least 1 and at most ``n_c - 1`` when ``n_c >= 2``; a class with one image stays in
   training) go to the pooled test set. Each class has its own generator ``(seed, split, c)``, so
   the pooled test set depends on the labels, the duplicate groups and the seed only: it is the
   same for every scheme, number of clients and few-shot setting, and the same inside a
   cross-domain partition. **Exact duplicates never straddle train and test**: images with the
   same content hash (the import's sha256; UC Merced ``airplane01``/``airplane02``, AID
   ``industrial_203``/``_205``) form a duplicate group, which the split shuffles and places as
   one unit, so a copy of a training image is never scored as unseen. A group whose copies carry
   different labels stays in training (no test image is scored against a conflicting copy). A
   class holding a group may get fewer than its test count when only groups too large for the
   remaining places are left (never on the shipped data, whose groups are pairs). The groups
   are recorded per dataset in the manifest (``domains[].duplicate_groups``).
2. **The training pool over N clients**: ``iid`` (a random permutation cut into N near-equal
   parts); ``dirichlet`` label skew (per class, proportions ``p ~ Dir(alpha * 1_N)`` cut the
   shuffled class of ``n_c`` images into N parts, the FLiP/FedOTP convention, of sizes
   ``p * n_c`` rounded by largest remainder with seeded tie-breaking, so that every client
   receives the floor or the ceiling of its share and no client is favoured by its position;
   redrawn, at most ``MAX_DIRICHLET_ATTEMPTS`` times, until every client holds
   ``min_samples_per_client`` images);
   ``pathological`` (every client holds exactly ``classes_per_client`` classes, assigned
   round-robin over a shuffled class list so that every class is held when ``k * N >= C``; a
   class is split into near-equal shards among its holders). With ``few_shot = K`` each client
   then keeps at most K images per class of its share (the rest of the share is unused).
3. **Personalised test splits**: client ``i`` with ``n_i`` images in its share asks for
   ``round(n_i * test_fraction / (1 - test_fraction))`` test images (the pool's train:test
   ratio), spread over classes in proportion to its share's class histogram (largest remainder),
   capped per class by the pooled test images of that class. With ``test_scheme="disjoint"``
   (the default) **no two clients share a test image**: where the clients together ask for more
   images of a class than the pooled test set holds, the class's images are divided in
   proportion to the requests (largest remainder, seeded tie-breaking), so each client gets the
   floor or ceiling of its proportional part; each class's pooled test images are then shuffled
   and dealt out. Clients' asks sum to about the pool (same ratio), so the trimming is a few
   images per class from rounding. With ``test_scheme="shared_pool"`` each client draws its full
   request independently (without replacement within a client, with overlap across clients),
   the scheme used before disjoint splits: two clients may share test images, so their
   accuracies are correlated and the weighted mean counts an image once per holder. The pooled
   test set stays for global accuracy. With few-shot the test split follows the share (the
   client's own label distribution), not the K-shot subset. The manifest's summary records each
   client's test images held by no other client and the distinct test images over all
   clients.

A :class:`Partition` is saved as one JSON manifest (config, per-dataset labels, pooled and
per-client indices, per-client histograms and summary statistics); :meth:`Partition.load` re-checks
every invariant. The same inputs give byte-identical JSON.

Cross-domain (beyond the paper): :func:`build_cross_domain_partition` puts several datasets on
groups of clients with a harmonised label space (:data:`DEFAULT_LABEL_MAP`, conservative: only
exact synonyms merge). Indices are global over the datasets concatenated in order;
:meth:`Partition.refs` turns them back into ``(dataset, index)`` references.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from fedrs.config import ConfigError, from_dict, to_dict
from fedrs.errors import DataError
from fedrs.io import write_text_atomic

from .registry import AID_HOLDOUT, find_spec, normalise, readable_classname

if TYPE_CHECKING:  # fedrs.data is imported lazily at run time
    from .scenes import SceneDataset

Scheme = Literal["iid", "dirichlet", "pathological"]
SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "pathological")
TestScheme = Literal["disjoint", "shared_pool"]
TEST_SCHEMES: tuple[str, ...] = ("disjoint", "shared_pool")
ClassSplit = Literal["all", "base-to-novel"]
CLASS_SPLITS: tuple[str, ...] = ("all", "base-to-novel")
Holdout = Literal["test", "validation"]
HOLDOUTS: tuple[str, ...] = ("test", "validation")
MAX_DIRICHLET_ATTEMPTS = 1000
FORMAT = "fedrs-partition"
FORMAT_VERSION = 2  # 2: duplicate groups, test_scheme, exclusive/distinct test counts
_INT_LIST = re.compile(r"\[\s+(-?\d+(?:,\s+-?\d+)*)\s+\]")

# child-generator stages: (seed, stage, ...) -> numpy.random.default_rng
_SPLIT, _CLIENTS, _FEW_SHOT, _TEST, _NOVEL, _VALIDATION = 0, 1, 2, 3, 4, 5


# --- configuration -----------------------------------------------------------------------------

@dataclass
class PartitionConfig:
    """How to build a Fed-RSIC partition (see the module docstring for each stage).

    ``dataset`` names the dataset; for a cross-domain partition it names the combined benchmark
    and ``cross_domain`` lists the datasets, one client group each, with ``clients_per_dataset``
    clients per group (default: ``num_clients`` split as evenly as possible, earlier groups
    larger). ``label_map`` adds to :data:`DEFAULT_LABEL_MAP`: ``{dataset: {class folder:
    harmonised name}}``.

    ``test_scheme`` chooses how clients' personalised test splits share the pooled test set:
    ``"disjoint"`` (default) gives every test image to at most one client, so that each client's
    accuracy is measured on its own images and the weighted mean over clients counts every image
    once (on UC Merced, Dir(0.5), 10 clients, the shared pool's 420 draws covered about 285
    distinct images); ``"shared_pool"`` lets every client draw its full proportional test split
    from the whole pooled test set, overlapping other clients'. Use it when the pool is too
    small for disjoint splits of useful size (many clients, few test images per class) or to
    compare with results built that way.

    ``unseen_clients`` adds that many clients who never train and are never sampled (the global
    model's accuracy on clients outside the federation's training, the study's generalisation
    axis). The pool is partitioned over ``num_clients + unseen_clients`` clients by the same
    scheme and seed, and clients ``num_clients ..`` are the unseen ones: the training clients
    are the first ``num_clients`` clients of that larger partition, so with unseen clients they
    hold less data than in a ``num_clients`` partition (compare runs at equal
    ``num_clients + unseen_clients``); 0 (the default) builds exactly the partition it always did.
    Single-dataset partitions only.

    ``holdout: validation`` scores on a validation split carved from the training images instead
    of the test split, for choices that must not see test images (the study's round budget R):
    the usual stratified train/test split is made first (the same test images as ``holdout:
    test``, set aside as ``held_out_indices``, never trained on or scored), then the same
    stratified ``test_fraction`` split of the training images (seeded ``(seed, validation, c)``)
    gives the validation images, which take the test split's place in every later stage (client
    test splits, pooled accuracy). The clients share only the remaining training images, so they
    hold ``1 - test_fraction`` of what they hold under ``holdout: test``. ``test`` (the default)
    builds exactly the partition it always did.

    ``class_split: base-to-novel`` is the base-to-novel protocol of CoOp/CoCoOp, followed by
    FedTPG, FedPGP and FLiP: the classes, in the dataset's class order (its sorted label indices),
    are cut into the first ``ceil(C / 2)`` (*base*) and the rest (*novel*,
    :func:`num_base_classes`). The pooled train/test split is the usual one; only base-class
    training images are partitioned over the clients (novel-class training images are never
    used), so every client's share and personalised test split hold base classes only. The
    pooled test images of the novel classes are dealt out to the training clients (per novel
    class, shuffled and cut into near-equal parts, seeded ``(seed, novel)``), each client's
    ``novel_test_indices``: where its model is scored on classes it never saw. Single-dataset
    partitions only; ``all`` (the default) uses every class.
    """

    dataset: str
    num_clients: int = 10
    scheme: Scheme = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    few_shot: int | None = None
    test_fraction: float = 0.2
    test_scheme: TestScheme = "disjoint"
    min_samples_per_client: int = 1
    seed: int = 0
    cross_domain: list[str] | None = None
    clients_per_dataset: list[int] | None = None
    label_map: dict[str, dict[str, str]] | None = None
    unseen_clients: int = 0
    class_split: ClassSplit = "all"
    holdout: Holdout = "test"

    def __post_init__(self) -> None:
        def integer(name: str, lowest: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"{name} must be an integer >= {lowest}, got {value!r}")

        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"dataset must name a dataset, got {self.dataset!r}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {list(SCHEMES)}, got {self.scheme!r}")
        if self.test_scheme not in TEST_SCHEMES:
            raise ConfigError(f"test_scheme must be one of {list(TEST_SCHEMES)} (disjoint: no two "
                              f"clients share a test image), got {self.test_scheme!r}")
        integer("num_clients", 1)
        integer("classes_per_client", 1)
        integer("min_samples_per_client", 1)
        integer("seed", 0)
        integer("unseen_clients", 0)
        if self.unseen_clients and self.cross_domain is not None:
            raise ConfigError("unseen_clients is for single-dataset partitions: drop it or cross_domain")
        if self.class_split not in CLASS_SPLITS:
            raise ConfigError(f"class_split must be one of {list(CLASS_SPLITS)} (base-to-novel: train on the "
                              f"first half of the classes, score the rest too), got {self.class_split!r}")
        if self.class_split != "all" and self.cross_domain is not None:
            raise ConfigError(f"class_split={self.class_split!r} is for single-dataset partitions: drop it or "
                              "cross_domain")
        if self.holdout not in HOLDOUTS:
            raise ConfigError(f"holdout must be one of {list(HOLDOUTS)} (validation: score on a split of the "
                              f"training images, the test images set aside), got {self.holdout!r}")
        if self.few_shot is not None:
            integer("few_shot", 1)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not np.isfinite(self.alpha) or self.alpha <= 0:
            raise ConfigError(f"alpha must be a number > 0 (Dirichlet concentration; smaller is "
                              f"more skewed, e.g. 0.1, 0.5, 1.0), got {self.alpha!r}")
        if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) \
                or not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must lie strictly between 0 and 1 (e.g. 0.2), "
                              f"got {self.test_fraction!r}")
        self._check_cross_domain()

    def describe(self, num_clients: int | None = None) -> str:
        """Short label for results, e.g. ``dirichlet(alpha=0.5), 10 clients`` (the default
        disjoint client test splits unnamed, ``, shared-pool tests`` otherwise)."""
        label = self.scheme + (f"(alpha={self.alpha})" if self.scheme == "dirichlet" else "") + \
            (f"(k={self.classes_per_client})" if self.scheme == "pathological" else "")
        return (f"{label}, {num_clients or self.num_clients} clients"
                + (f", {self.few_shot}-shot" if self.few_shot else "")
                + (", shared-pool tests" if self.test_scheme == "shared_pool" else "")
                + (f", +{self.unseen_clients} unseen clients" if self.unseen_clients else "")
                + (f", {self.class_split}" if self.class_split != "all" else "")
                + (", validation holdout" if self.holdout == "validation" else ""))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, without the fields added after version 2 of the
        manifest while they hold their defaults (:data:`ADDED_DEFAULTS`), so that a partition
        built without them keeps its manifest byte for byte."""
        return {k: v for k, v in to_dict(self).items() if k not in ADDED_DEFAULTS or v != ADDED_DEFAULTS[k]}

    def _check_cross_domain(self) -> None:
        if self.cross_domain is None:
            if self.clients_per_dataset is not None:
                raise ConfigError("clients_per_dataset is set but cross_domain is not: list the "
                                  "datasets in cross_domain or drop clients_per_dataset")
            return
        names = list(self.cross_domain)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"cross_domain must list at least two distinct datasets, got {names}")
        if self.num_clients < len(names):
            raise ConfigError(f"num_clients={self.num_clients} is fewer than the {len(names)} "
                              f"cross_domain datasets: give every dataset at least one client")
        groups = self.clients_per_dataset
        if groups is not None:
            if len(groups) != len(names) or any(not isinstance(g, int) or g < 1 for g in groups):
                raise ConfigError(f"clients_per_dataset must give one count >= 1 per cross_domain "
                                  f"dataset {names}, got {groups}")
            if sum(groups) != self.num_clients:
                raise ConfigError(f"clients_per_dataset {groups} sums to {sum(groups)}, not "
                                  f"num_clients={self.num_clients}: make them agree")

    def client_groups(self) -> list[int]:
        """Clients per cross_domain dataset (the even split when ``clients_per_dataset`` is None)."""
        if self.cross_domain is None:
            return [self.num_clients]
        if self.clients_per_dataset is not None:
            return list(self.clients_per_dataset)
        q, r = divmod(self.num_clients, len(self.cross_domain))
        return [q + (i < r) for i in range(len(self.cross_domain))]


#: PartitionConfig fields added after manifests were first written, with their defaults: left out
#: of a manifest (and of metrics.json's partition) while at the default
ADDED_DEFAULTS: dict[str, Any] = {"unseen_clients": 0, "class_split": "all", "holdout": "test"}


def num_base_classes(num_classes: int) -> int:
    """How many of ``num_classes`` classes are *base* under ``class_split: base-to-novel``: the
    first ``ceil(C / 2)`` in class order, as CoOp's ``subsample_classes`` (``m = ceil(n / 2)``)."""
    return (num_classes + 1) // 2


# --- named configurations ----------------------------------------------------------------------

#: named Fed-RSIC configurations (PartitionConfig fields); the paper's three, the offline ones
#: built from the shipped data, and two cross-domain ones
FED_RSIC_CONFIGS: dict[str, dict[str, Any]] = {
    # the paper's Fed-RSIC subsets (datasets the user downloads)
    "Fed-Optimal": {"dataset": "OPTIMAL-31"},
    "Fed-UCMerced": {"dataset": "UCMerced"},
    "Fed-NWPU": {"dataset": "NWPU-RESISC45"},
    # offline: the shipped archives (AID only through the images RSICD training does not use)
    "Fed-RSSCN7": {"dataset": "RSSCN7"},
    "Fed-EuroSAT": {"dataset": "EuroSAT"},
    "Fed-AID": {"dataset": AID_HOLDOUT},
    # cross-domain (beyond the paper): one group of clients per dataset
    "Fed-CrossDomain": {"dataset": "Fed-CrossDomain", "num_clients": 12,
                        "cross_domain": ["UCMerced", AID_HOLDOUT, "RSSCN7", "EuroSAT"]},
    "Fed-CrossDomain-paper": {"dataset": "Fed-CrossDomain-paper", "num_clients": 9,
                              "cross_domain": ["OPTIMAL-31", "UCMerced", "NWPU-RESISC45"]},
}

#: the named configurations whose data ship with the study (buildable offline)
FED_RSIC_OFFLINE: tuple[str, ...] = ("Fed-UCMerced", "Fed-RSSCN7", "Fed-EuroSAT", "Fed-AID",
                                     "Fed-CrossDomain")


def fed_rsic_config(name: str, **overrides: Any) -> PartitionConfig:
    """The named configuration ``name`` (see :data:`FED_RSIC_CONFIGS`) with ``overrides``."""
    found = [k for k in FED_RSIC_CONFIGS if normalise(k) == normalise(name)]
    if not found:
        raise ConfigError(f"unknown Fed-RSIC configuration {name!r}: choose one of "
                          f"{sorted(FED_RSIC_CONFIGS)} or build a PartitionConfig yourself")
    return from_dict(PartitionConfig, {**FED_RSIC_CONFIGS[found[0]], **overrides}, found[0])


# --- label harmonisation -----------------------------------------------------------------------

def _table(pairs: str) -> dict[str, str]:
    """``"folder=name; folder=name"`` -> dict (keeps the tables below one line per class)."""
    return dict(p.split("=") for p in (s.strip() for s in pairs.split(";")) if p)


#: harmonised class names of the shipped datasets, every class listed. Conservative: classes merge
#: only when they are the same concept under another spelling (forest/Forest/eForest,
#: parkinglot/Parking/gParking, Industrial/cIndustry, Residential/fResident); near-synonyms stay
#: apart (farmland vs farm field, harbor vs port, freeway vs highway, dense residential vs
#: residential). Classes of other datasets default to their readable names, so identical concepts
#: there merge too (NWPU "dense_residential" = UC Merced "denseresidential").
DEFAULT_LABEL_MAP: dict[str, dict[str, str]] = {
    "UCMerced": _table(
        "agricultural=agricultural land; airplane=airplane; baseballdiamond=baseball diamond; "
        "beach=beach; buildings=buildings; chaparral=chaparral; "
        "denseresidential=dense residential; forest=forest; freeway=freeway; "
        "golfcourse=golf course; harbor=harbor; intersection=intersection; "
        "mediumresidential=medium residential; mobilehomepark=mobile home park; "
        "overpass=overpass; parkinglot=parking lot; river=river; runway=runway; "
        "sparseresidential=sparse residential; storagetanks=storage tanks; "
        "tenniscourt=tennis court"),
    "AID": _table(
        "Airport=airport; BareLand=bare land; BaseballField=baseball field; Beach=beach; "
        "Bridge=bridge; Center=center; Church=church; Commercial=commercial; "
        "DenseResidential=dense residential; Desert=desert; Farmland=farmland; Forest=forest; "
        "Industrial=industrial; Meadow=meadow; MediumResidential=medium residential; "
        "Mountain=mountain; Park=park; Parking=parking lot; Playground=playground; Pond=pond; "
        "Port=port; RailwayStation=railway station; Resort=resort; River=river; School=school; "
        "SparseResidential=sparse residential; Square=square; Stadium=stadium; "
        "StorageTanks=storage tanks; Viaduct=viaduct"),
    "RSSCN7": _table(
        "aGrass=grass; bField=farm field; cIndustry=industrial; dRiverLake=river or lake; "
        "eForest=forest; fResident=residential; gParking=parking lot"),
    "EuroSAT": _table(
        "AnnualCrop=annual crop land; Forest=forest; "
        "HerbaceousVegetation=herbaceous vegetation land; Highway=highway or road; "
        "Industrial=industrial; Pasture=pasture land; PermanentCrop=permanent crop land; "
        "Residential=residential; River=river; SeaLake=sea or lake"),
    "NWPU-RESISC45": _table("industrial_area=industrial; commercial_area=commercial; "
                            "storage_tank=storage tanks"),
    "OPTIMAL-31": _table("industrial_area=industrial; commercial_area=commercial"),
}
DEFAULT_LABEL_MAP[AID_HOLDOUT] = DEFAULT_LABEL_MAP["AID"]


def harmonised_classnames(dataset: str, classnames: Sequence[str],
                          label_map: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """The harmonised name of each class of ``dataset``: ``label_map`` > default table > readable."""
    user = dict((label_map or {}).get(dataset, {}))
    unknown = sorted(set(user) - set(classnames))
    if unknown:
        raise ConfigError(f"label_map[{dataset!r}] names unknown class folder(s) {unknown}: "
                          f"use the folder names {list(classnames)}")
    spec = find_spec(dataset)
    default = DEFAULT_LABEL_MAP.get(dataset) or DEFAULT_LABEL_MAP.get(spec.name if spec else "", {})
    return [user.get(c) or default.get(c) or readable_classname(c) for c in classnames]


# --- the partition -----------------------------------------------------------------------------

@dataclass
class ClientSplit:
    """One client's data: global sample indices (see :meth:`Partition.refs`) and histograms.

    ``class_histogram`` counts the training images per class; ``share_histogram`` the client's
    share of the pool before few-shot sampling (equal to ``class_histogram`` without few-shot),
    which its test split follows. ``dataset`` is the client's dataset (its cross-domain group).
    ``novel_test_indices``: under ``class_split: base-to-novel``, the client's share of the pooled
    test images of the novel classes (``None`` otherwise, and for unseen clients).
    """

    client_id: int
    train_indices: list[int]
    test_indices: list[int]
    class_histogram: list[int]
    share_histogram: list[int] | None = None
    dataset: str = ""
    novel_test_indices: list[int] | None = None

    def __post_init__(self) -> None:
        if self.share_histogram is None:
            self.share_histogram = list(self.class_histogram)

    @property
    def num_classes(self) -> int:
        """How many classes the client trains on."""
        return sum(1 for n in self.class_histogram if n)


_CLIENT_FIELDS = [f.name for f in dataclasses.fields(ClientSplit)]


@dataclass
class Domain:
    """One dataset inside a partition: its own labels and where its indices start.

    ``duplicate_groups`` lists the images with identical content (same content hash) as sorted
    lists of indices in this dataset (not global), one per group of two or more, ordered by their
    first index; each group lies wholly in the pooled train or the pooled test set.
    """

    dataset: str
    classnames: list[str]
    labels: list[int]
    label_map: list[int]  # own class -> partition class
    offset: int = 0
    duplicate_groups: list[list[int]] = field(default_factory=list)

    @property
    def stop(self) -> int:
        return self.offset + len(self.labels)


@dataclass
class Partition:
    """A built Fed-RSIC partition; every index is global over ``domains`` (one for a single dataset,
    where global and dataset indices coincide)."""

    dataset: str
    classnames: list[str]
    train_indices: list[int]
    test_indices: list[int]
    clients: list[ClientSplit]
    config: PartitionConfig
    domains: list[Domain] = field(default_factory=list)
    #: clients who never train (``config.unseen_clients``), ids ``num_clients ..``
    unseen: list[ClientSplit] = field(default_factory=list)
    #: ``config.holdout: validation``: the test images of the usual split, set aside (never trained
    #: on, never scored); ``test_indices`` then holds the validation images carved from training
    held_out_indices: list[int] = field(default_factory=list)

    # -- views --
    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def base_to_novel(self) -> bool:
        return self.config.class_split == "base-to-novel"

    @property
    def num_base_classes(self) -> int:
        """The classes the clients train on: the first ``num_base_classes`` of :attr:`classnames`
        (all of them unless base-to-novel)."""
        return num_base_classes(len(self.classnames)) if self.base_to_novel else len(self.classnames)

    @property
    def base_test_indices(self) -> list[int]:
        """The pooled test images of the classes the clients train on (global accuracy): all of
        :attr:`test_indices` unless base-to-novel."""
        if not self.base_to_novel:
            return list(self.test_indices)
        labels = self.labels
        return [i for i in self.test_indices if labels[i] < self.num_base_classes]

    @property
    def novel_test_indices(self) -> list[int]:
        """The pooled test images of the novel classes (empty unless base-to-novel)."""
        if not self.base_to_novel:
            return []
        labels = self.labels
        return [i for i in self.test_indices if labels[i] >= self.num_base_classes]

    @property
    def labels(self) -> np.ndarray:
        """Every sample's label in the partition's class space, in global index order."""
        parts = [np.asarray(d.label_map, dtype=np.int64)[np.asarray(d.labels, dtype=np.int64)]
                 for d in self.domains]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def refs(self, indices: Sequence[int]) -> list[tuple[str, int]]:
        """``(dataset, index in that dataset)`` for global indices."""
        starts = np.array([d.offset for d in self.domains])
        out = []
        for i in indices:
            d = self.domains[int(np.searchsorted(starts, i, side="right")) - 1]
            out.append((d.dataset, int(i) - d.offset))
        return out

    def check_dataset(self, dataset: "SceneDataset") -> None:
        """Raise a DataError unless ``dataset`` has the labels and classes this partition was built on."""
        match = [d for d in self.domains if _same_dataset(d.dataset, dataset.name)]
        if not match or list(match[0].classnames) != list(dataset.classnames) \
                or list(match[0].labels) != list(dataset.labels) \
                or match[0].duplicate_groups != _duplicate_groups(_hashes_of(dataset)):
            raise DataError(f"dataset {dataset.name!r} ({len(dataset.labels)} images) is not the data this "
                            f"partition of {self.dataset!r} was built on: rebuild the partition "
                            f"with partition_dataset(dataset, cfg)")

    def summary(self) -> dict[str, Any]:
        """Samples and classes per client, the label skew (mean total-variation distance
        between each client's training distribution and the pool's), how many of each client's
        test images no other client holds and how many distinct test images the clients hold
        together (for auditing the test scheme), and the number of exact-duplicate groups."""
        hists = np.array([c.class_histogram for c in self.clients], dtype=float)
        pooled_train = self.labels[self.train_indices]
        pooled_train = pooled_train[pooled_train < self.num_base_classes]  # what the clients can hold
        pool = np.bincount(pooled_train, minlength=len(self.classnames))
        pool = pool / max(pool.sum(), 1)
        shares = hists / np.maximum(hists.sum(axis=1, keepdims=True), 1)
        train = [len(c.train_indices) for c in self.clients]
        classes = [c.num_classes for c in self.clients]
        holders = np.bincount(np.concatenate([np.asarray(c.test_indices, dtype=np.int64)
                                              for c in self.clients] or [np.zeros(0, np.int64)]),
                              minlength=len(self.labels))
        out = {
            "num_clients": self.num_clients,
            "num_classes": len(self.classnames),
            "num_samples": len(self.labels),
            "num_train": len(self.train_indices),
            "num_test": len(self.test_indices),
            "num_assigned": sum(train),
            "samples_per_client": train,
            "test_samples_per_client": [len(c.test_indices) for c in self.clients],
            # test images a client holds that no other client's test split holds (all of them
            # under the disjoint scheme), and the distinct test images over all clients
            "exclusive_test_samples_per_client": [int(np.sum(holders[c.test_indices] == 1))
                                                  for c in self.clients],
            "distinct_test_samples": int(np.sum(holders > 0)),
            "num_duplicate_groups": sum(len(d.duplicate_groups) for d in self.domains),
            "classes_per_client": classes,
            "mean_samples_per_client": round(float(np.mean(train)), 6),
            "mean_classes_per_client": round(float(np.mean(classes)), 6),
            "label_skew_tv": round(float(0.5 * np.abs(shares - pool).sum(axis=1).mean()), 6),
        }
        if self.base_to_novel:
            out["num_base_classes"] = self.num_base_classes
            out["novel_test_samples_per_client"] = [len(c.novel_test_indices or []) for c in self.clients]
        if self.unseen:
            out["unseen_clients"] = len(self.unseen)
            out["unseen_samples_per_client"] = [len(c.train_indices) for c in self.unseen]
            out["unseen_test_samples_per_client"] = [len(c.test_indices) for c in self.unseen]
        return out

    # -- persistence --
    def to_dict(self) -> dict[str, Any]:
        labels = self.labels

        def client(c: ClientSplit) -> dict[str, Any]:
            row = {"client_id": c.client_id, "dataset": c.dataset,
                   "class_histogram": c.class_histogram, "share_histogram": c.share_histogram,
                   "test_histogram": _histogram(labels[c.test_indices], len(self.classnames)),
                   "train_indices": c.train_indices, "test_indices": c.test_indices}
            if c.novel_test_indices is not None:
                row["novel_test_indices"] = c.novel_test_indices
            return row

        out = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dataset": self.dataset,
            "classnames": list(self.classnames),
            "config": self.config.to_dict(),
            "summary": self.summary(),
            "domains": [dataclasses.asdict(d) for d in self.domains],
            "train_indices": list(self.train_indices),
            "test_indices": list(self.test_indices),
            "clients": [client(c) for c in self.clients],
        }
        if self.unseen:
            out["unseen_clients"] = [client(c) for c in self.unseen]
        if self.config.holdout != "test":
            out["held_out_indices"] = list(self.held_out_indices)
        return out

    def to_json(self) -> str:
        """The manifest text (the exact bytes :meth:`save` writes): indented, one line per list
        of integers."""
        text = json.dumps(self.to_dict(), indent=2)
        return _INT_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the manifest atomically."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Partition":
        """Read a manifest and re-check every invariant (a DataError names what is wrong)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable partition manifest ({exc}): rebuild it with "
                            f"build_partition(...).save(path)") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "partition") -> "Partition":
        if isinstance(data, Mapping) and data.get("format") == FORMAT \
                and isinstance(data.get("version"), int) and data["version"] < FORMAT_VERSION:
            raise DataError(f"{source}: a {FORMAT} v{data['version']} manifest, built before "
                            f"duplicate-aware splits and disjoint client test splits (v"
                            f"{FORMAT_VERSION}): its partition cannot be rebuilt by this version; "
                            f"rebuild it with build_partition(...).save(path)")
        try:
            if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
                raise DataError(f"not a {FORMAT} v{FORMAT_VERSION} manifest")
            part = cls(
                dataset=data["dataset"], classnames=list(data["classnames"]),
                train_indices=list(data["train_indices"]), test_indices=list(data["test_indices"]),
                clients=[ClientSplit(**{k: c[k] for k in _CLIENT_FIELDS if k in c}) for c in data["clients"]],
                config=from_dict(PartitionConfig, data["config"], "config"),
                domains=[Domain(**d) for d in data["domains"]],
                unseen=[ClientSplit(**{k: c[k] for k in _CLIENT_FIELDS if k in c})
                        for c in data.get("unseen_clients", [])],
                held_out_indices=list(data.get("held_out_indices", [])),
            )
            part.validate()
            rows = part.to_dict()
            stored = {c["client_id"]: c.get("test_histogram") for c in data["clients"] + data.get("unseen_clients", [])}
            for c, row in zip(part.clients + part.unseen, rows["clients"] + rows.get("unseen_clients", [])):
                if stored[c.client_id] != row["test_histogram"]:
                    raise DataError(f"client {c.client_id}: test_histogram does not match its "
                                    f"test labels")
            if data.get("summary") != part.summary():
                raise DataError("the summary does not match the clients")
        except (KeyError, TypeError, AttributeError, ConfigError, DataError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DataError(f"{source}: invalid partition manifest ({what}): it was edited or "
                            f"corrupted; rebuild it with build_partition(...).save(path)") from exc
        return part

    # -- invariants --
    def validate(self) -> None:
        """Raise a DataError unless every invariant holds (run after building and on load)."""
        cfg = self.config
        num_classes = len(self.classnames)
        labels = self.labels
        n = len(labels)
        _check(num_classes > 0 and len(set(self.classnames)) == num_classes,
               "classnames must be non-empty and distinct")
        offset = 0
        for d in self.domains:
            _check(d.offset == offset, f"domain {d.dataset!r} starts at {d.offset}, not {offset}")
            _check(len(d.label_map) == len(d.classnames)
                   and all(0 <= m < num_classes for m in d.label_map),
                   f"domain {d.dataset!r}: label_map must map each class into the class space")
            _check(all(0 <= y < len(d.classnames) for y in d.labels),
                   f"domain {d.dataset!r}: labels out of range")
            offset = d.stop
        _check(len(self.domains) == len(cfg.client_groups()),
               f"{len(self.domains)} datasets, config has {len(cfg.client_groups())} client groups")
        train, test = np.asarray(self.train_indices, dtype=np.int64), np.asarray(self.test_indices, dtype=np.int64)
        _check(_sorted_unique(train) and _sorted_unique(test), "pooled indices must be sorted and unique")
        _check(_in_range(train, 0, n) and _in_range(test, 0, n), f"pooled indices out of range [0, {n})")
        held_out = np.asarray(self.held_out_indices, dtype=np.int64)
        _check(_sorted_unique(held_out) and _in_range(held_out, 0, n), "held-out indices must be sorted, unique "
                                                                        f"and in [0, {n})")
        _check((cfg.holdout == "validation") == bool(len(held_out)),
               "held-out test images exist exactly when holdout is 'validation'")
        _check(len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(held_out, np.concatenate([train, test])))
               == 0 and len(train) + len(test) + len(held_out) == n,
               "the pooled train and test sets (and the held-out test set) must split every sample exactly once")
        is_test = np.zeros(n, dtype=bool)
        is_test[test] = True
        is_held = np.zeros(n, dtype=bool)
        is_held[held_out] = True
        for d in self.domains:
            own = np.asarray(d.labels, dtype=np.int64)
            in_test = is_test[d.offset:d.stop]
            in_held = is_held[d.offset:d.stop]
            grouped = np.zeros(len(own), dtype=bool)
            for g in d.duplicate_groups:
                _check(len(g) >= 2 and _sorted_unique(np.asarray(g)) and _in_range(np.asarray(g), 0, len(own))
                       and not grouped[g].any(),
                       f"domain {d.dataset!r}: duplicate groups must be disjoint sorted lists of "
                       f"two or more of its indices")
                grouped[g] = True
                for where, name in ((in_test, "test"), (in_held, "held-out test")):
                    _check(bool(where[g].all() or not where[g].any()),
                           f"domain {d.dataset!r}: duplicate images {g} straddle train and {name}")
                    _check(len(set(own[g].tolist())) == 1 or not where[g].any(),
                           f"domain {d.dataset!r}: duplicate images {g} with different labels are in {name}")
            with_groups = np.bincount(own[grouped], minlength=len(d.classnames)) > 0
            # holdout validation: the usual test split is held out, and the validation split is the
            # same stratified split of what is left (the training images)
            stages = [(in_held, np.ones(len(own), dtype=bool), "held-out test"),
                      (in_test, ~in_held, "validation")] if cfg.holdout == "validation" else \
                [(in_test, np.ones(len(own), dtype=bool), "test")]
            for chosen, among, name in stages:
                expect = np.array([_num_test(int(k), cfg.test_fraction)
                                   for k in np.bincount(own[among], minlength=len(d.classnames))])
                got = np.bincount(own[chosen], minlength=len(d.classnames))
                _check(bool(np.all(np.where(with_groups, got <= expect, got == expect))),
                       f"domain {d.dataset!r}: the {name} split is not the stratified "
                       f"test_fraction={cfg.test_fraction} split per class")
        everyone = self.clients + self.unseen
        _check([c.client_id for c in everyone] == list(range(len(everyone))),
               "client ids must be 0..N-1 in order, the unseen clients' after the training clients'")
        _check(len(self.clients) == cfg.num_clients,
               f"{len(self.clients)} clients, config says num_clients={cfg.num_clients}")
        _check(len(self.unseen) == cfg.unseen_clients,
               f"{len(self.unseen)} unseen clients, config says unseen_clients={cfg.unseen_clients}")
        owner = np.full(n, -1, dtype=np.int64)
        ratio = cfg.test_fraction / (1 - cfg.test_fraction)
        for c in everyone:
            self._validate_client(c, labels, owner, is_test)
        self._validate_novel(labels)
        for d, k in zip(self.domains, cfg.client_groups()):
            _check(sum(c.dataset == d.dataset for c in self.clients) == k,
                   f"domain {d.dataset!r} must have {k} clients")
            self._validate_tests(d, labels, is_test, ratio)
            if cfg.few_shot is not None:
                continue
            pool = train[(train >= d.offset) & (train < d.stop)]
            pool = pool[labels[pool] < self.num_base_classes]  # base-to-novel: novel classes stay unused
            held = labels[pool]
            holders = k + cfg.unseen_clients  # single-dataset when there are unseen clients
            if cfg.scheme == "pathological" and cfg.classes_per_client * holders < len(np.unique(held)):
                held_classes = {y for c in everyone if c.dataset == d.dataset
                                for y, m in enumerate(c.class_histogram) if m}
                pool = pool[np.isin(held, sorted(held_classes))]
            _check(bool(np.all(owner[pool] >= 0)),
                   f"domain {d.dataset!r}: training images left unassigned")

    def _validate_novel(self, labels: np.ndarray) -> None:
        """Base-to-novel: clients hold base classes only, and the pooled novel test images are
        dealt out to the training clients exactly once; otherwise no client has a novel split."""
        base = self.num_base_classes
        if not self.base_to_novel:
            _check(all(c.novel_test_indices is None for c in self.clients + self.unseen),
                   "novel_test_indices without class_split: base-to-novel")
            return
        for c in self.clients + self.unseen:
            held = np.asarray(c.train_indices + c.test_indices, dtype=np.int64)
            _check(bool(np.all(labels[held] < base)), f"client {c.client_id}: holds a novel class under base-to-novel")
        _check(all(c.novel_test_indices is None for c in self.unseen), "an unseen client has a novel test split")
        _check(all(c.novel_test_indices is not None for c in self.clients), "a client has no novel test split")
        dealt = [np.asarray(c.novel_test_indices, dtype=np.int64) for c in self.clients]
        _check(all(_sorted_unique(d) for d in dealt), "novel test indices must be sorted and unique")
        together = np.sort(np.concatenate(dealt)) if dealt else np.zeros(0, dtype=np.int64)
        _check(np.array_equal(together, np.asarray(self.novel_test_indices, dtype=np.int64)),
               "the novel test images must be dealt out to the clients exactly once")

    def _validate_client(self, c: ClientSplit, labels: np.ndarray, owner: np.ndarray,
                         is_test: np.ndarray) -> None:
        cfg, num_classes = self.config, len(self.classnames)
        who = f"client {c.client_id}"
        dom = [d for d in self.domains if d.dataset == c.dataset]
        _check(len(dom) == 1, f"{who}: unknown dataset {c.dataset!r}")
        d = dom[0]
        tr, te = np.asarray(c.train_indices, dtype=np.int64), np.asarray(c.test_indices, dtype=np.int64)
        _check(_sorted_unique(tr) and _sorted_unique(te), f"{who}: indices must be sorted and unique")
        _check(_in_range(tr, d.offset, d.stop) and _in_range(te, d.offset, d.stop),
               f"{who}: indices outside its dataset {d.dataset!r}")
        _check(len(tr) > 0 and len(te) > 0, f"{who} has no training or no test data")
        _check(not is_test[tr].any() and is_test[te].all(),
               f"{who}: training images must come from the pool and test images from the pooled test set")
        _check(bool(np.all(owner[tr] < 0)), f"{who}: training images also assigned to another client")
        owner[tr] = c.client_id
        hist = _histogram(labels[tr], num_classes)
        _check(c.class_histogram == hist, f"{who}: class_histogram does not match its training labels")
        share = c.share_histogram
        _check(len(share) == num_classes and all(s >= h for s, h in zip(share, hist)),
               f"{who}: share_histogram must cover its training images")
        if cfg.few_shot is None:
            _check(share == hist, f"{who}: share_histogram differs from class_histogram without few-shot")
        else:
            _check(hist == [min(s, cfg.few_shot) for s in share],
                   f"{who}: few-shot must keep min(K={cfg.few_shot}, share) images per class")
        _check(sum(share) >= cfg.min_samples_per_client,
               f"{who}: fewer than min_samples_per_client={cfg.min_samples_per_client} images")
        if cfg.scheme == "pathological":
            _check(sum(1 for s in share if s) == cfg.classes_per_client,
                   f"{who}: holds {sum(1 for s in share if s)} classes, not "
                   f"classes_per_client={cfg.classes_per_client}")

    def _validate_tests(self, d: Domain, labels: np.ndarray, is_test: np.ndarray, ratio: float) -> None:
        """A dataset's client test splits: each client's request (:func:`_test_quota`) met in full
        (shared_pool), or, disjoint, no image held twice and each class's requests met in full
        or, where they exceed the pool, the pool divided by largest remainder."""
        num_classes = len(self.classnames)
        clients = [c for c in self.clients + self.unseen if c.dataset == d.dataset]
        pool = np.flatnonzero(is_test[d.offset:d.stop]) + d.offset
        available = np.bincount(labels[pool], minlength=num_classes)
        asked = np.array([_test_quota(c.share_histogram, available, ratio) for c in clients])
        got = np.array([_histogram(labels[c.test_indices], num_classes) for c in clients])
        if self.config.test_scheme == "shared_pool":
            for c, a, g in zip(clients, asked, got):
                _check(np.array_equal(a, g), f"client {c.client_id}: the test split does not follow "
                                             f"its label distribution")
            return
        held = np.concatenate([np.asarray(c.test_indices, dtype=np.int64) for c in clients])
        _check(len(np.unique(held)) == len(held),
               f"domain {d.dataset!r}: two clients share a test image under test_scheme='disjoint'")
        demand = asked.sum(axis=0)
        over = demand > available
        for c, a, g in zip(clients, asked, got):
            lower = np.where(over, a * available // np.maximum(demand, 1), a)
            upper = np.where(over, -(-a * available // np.maximum(demand, 1)), a)
            _check(bool(np.all((lower <= g) & (g <= upper))),
                   f"client {c.client_id}: the test split does not follow its label distribution")
        _check(bool(np.all(got.sum(axis=0)[over] == available[over])),
               f"domain {d.dataset!r}: an oversubscribed class's pooled test images are not all dealt")


# --- building ----------------------------------------------------------------------------------

def build_partition(labels: Sequence[int], classnames: Sequence[str], cfg: PartitionConfig,
                    content_hashes: Sequence[str] | None = None) -> Partition:
    """Split one dataset (its integer labels and class names) into a Fed-RSIC partition.

    ``content_hashes`` (one per image, e.g. ``SceneDataset.hashes``; ``""`` = unknown) marks
    exact duplicates, which the train/test split keeps on one side; None: no duplicates known.
    """
    if cfg.cross_domain is not None:
        raise ConfigError(f"{cfg.dataset!r} is a cross-domain configuration: use "
                          f"build_cross_domain_partition (or build_fed_rsic)")
    y = _check_labels(cfg.dataset, labels, classnames)
    groups = _duplicate_groups(_check_hashes(cfg.dataset, content_hashes, len(y)))
    domain = Domain(cfg.dataset, list(classnames), y.tolist(), list(range(len(classnames))),
                    duplicate_groups=groups)
    return _assemble(cfg, list(classnames), [domain])


def build_cross_domain_partition(
    datasets: Sequence[tuple[str, Sequence[int], Sequence[str]]],
    clients_per_dataset: Sequence[int] | None,
    cfg: PartitionConfig,
    label_map: Mapping[str, Mapping[str, str]] | None = None,
    content_hashes: Sequence[Sequence[str] | None] | None = None,
) -> Partition:
    """Several datasets, ``(name, labels, classnames)`` each, on groups of clients.

    ``content_hashes`` gives each dataset's per-image content hashes (or None) as in
    :func:`build_partition`; duplicates are grouped within a dataset (each dataset is split on
    its own, so that its pooled test set equals its single-dataset one).

    Classes are harmonised by name (``label_map`` over ``cfg.label_map`` over
    :data:`DEFAULT_LABEL_MAP`, then readable names); the partition's classes are the sorted union
    of the harmonised names. ``clients_per_dataset`` (or ``cfg``'s groups) sets the group sizes,
    and ``num_clients`` becomes their sum. The config stored with the partition records the
    effective datasets, groups and label map. Each dataset's pooled test set equals its
    single-dataset one for the same seed.
    """
    names = [name for name, _, _ in datasets]
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"cross-domain needs at least two distinct datasets, got {names}")
    if cfg.cross_domain is not None and list(cfg.cross_domain) != names:
        raise ConfigError(f"the config lists cross_domain={cfg.cross_domain} but the datasets "
                          f"given are {names}: pass them in that order")
    merged = {k: dict(v) for k, v in (cfg.label_map or {}).items()}
    for k, v in (label_map or {}).items():
        merged.setdefault(k, {}).update(v)
    groups = list(clients_per_dataset) if clients_per_dataset is not None else (
        cfg.client_groups() if cfg.cross_domain is not None else None)
    try:
        cfg = replace(cfg, cross_domain=names, label_map=merged or None,
                      num_clients=sum(groups) if groups else cfg.num_clients,
                      clients_per_dataset=groups)
    except ConfigError as exc:
        raise ConfigError(f"cross-domain {cfg.dataset!r}: {exc}") from exc
    harmonised = [harmonised_classnames(name, classes, merged) for name, _, classes in datasets]
    space = sorted(set().union(*harmonised))
    index = {c: i for i, c in enumerate(space)}
    hashes = list(content_hashes) if content_hashes is not None else [None] * len(datasets)
    if len(hashes) != len(datasets):
        raise DataError(f"content_hashes must give one entry (a list or None) per dataset "
                        f"{names}, got {len(hashes)}")
    domains, offset = [], 0
    for (name, labels, classes), names_h, digests in zip(datasets, harmonised, hashes):
        y = _check_labels(name, labels, classes)
        groups = _duplicate_groups(_check_hashes(name, digests, len(y)))
        domains.append(Domain(name, list(classes), y.tolist(), [index[c] for c in names_h], offset,
                              duplicate_groups=groups))
        offset += len(y)
    return _assemble(cfg, space, domains)


def _assemble(cfg: PartitionConfig, classnames: list[str], domains: list[Domain]) -> Partition:
    num_classes = len(classnames)
    train_all, test_all, held_all, clients = [], [], [], []
    for g, (d, k) in enumerate(zip(domains, cfg.client_groups())):
        own = np.asarray(d.labels, dtype=np.int64)
        y = np.asarray(d.label_map, dtype=np.int64)[own]
        train, test = _stratified_split(own, len(d.classnames), cfg.test_fraction, cfg.seed,
                                        d.duplicate_groups)
        if cfg.holdout == "validation":  # the test images aside; validation = the same split of the rest
            held_all.append(test + d.offset)
            train, test = _validation_split(own, train, len(d.classnames), cfg, d.duplicate_groups)
        k += cfg.unseen_clients  # single-dataset only: the unseen clients are the last ones
        base = num_base_classes(num_classes) if cfg.class_split == "base-to-novel" else num_classes
        pool = train[y[train] < base]  # base-to-novel: novel-class training images are never used
        if k > len(pool):
            raise ConfigError(f"num_clients={k - cfg.unseen_clients}"
                              + (f" + unseen_clients={cfg.unseen_clients}" if cfg.unseen_clients else "")
                              + f" exceeds the {len(pool)} training images of {d.dataset!r} (after the test "
                              f"split): use fewer clients")
        shares = _split_pool(pool, y, k, cfg, d.dataset, _rng(cfg.seed, _CLIENTS, g))
        kept = shares if cfg.few_shot is None else _few_shot(shares, y, cfg.few_shot, _rng(cfg.seed, _FEW_SHOT, g))
        tests = _client_tests(shares, y, test, num_classes, cfg, d.dataset, _rng(cfg.seed, _TEST, g))
        novel = [None] * k
        if base < num_classes:  # dealt to the training clients only
            novel[:cfg.num_clients] = [(t + d.offset).tolist() for t in _novel_tests(
                test[y[test] >= base], y, cfg.num_clients, _rng(cfg.seed, _NOVEL, g))]
        for share, own_train, own_test, own_novel in zip(shares, kept, tests, novel):
            clients.append(ClientSplit(
                client_id=len(clients),
                train_indices=(own_train + d.offset).tolist(),
                test_indices=(own_test + d.offset).tolist(),
                class_histogram=_histogram(y[own_train], num_classes),
                share_histogram=_histogram(y[share], num_classes),
                dataset=d.dataset,
                novel_test_indices=own_novel,
            ))
        train_all.append(train + d.offset)
        test_all.append(test + d.offset)
    trained = cfg.num_clients
    part = Partition(
        dataset=cfg.dataset, classnames=classnames,
        train_indices=np.concatenate(train_all).tolist(), test_indices=np.concatenate(test_all).tolist(),
        clients=clients[:trained], config=cfg, domains=domains, unseen=clients[trained:],
        held_out_indices=np.concatenate(held_all).tolist() if held_all else [],
    )
    part.validate()
    return part


def split_by_label(labels: Sequence[int], cfg: PartitionConfig) -> list[list[int]]:
    """Every index of ``labels`` over ``cfg.num_clients`` clients by ``cfg.scheme`` (``iid``,
    ``dirichlet`` with ``alpha``, ``pathological`` with ``classes_per_client``): the client stage of
    a Fed-RSIC partition, without its test split. For data whose test split is fixed elsewhere
    (retrieval: the caption set's own test split). Sorted indices per client, disjoint."""
    if cfg.few_shot is not None or cfg.unseen_clients:
        raise ConfigError("few_shot and unseen_clients apply to classification partitions only: drop them")
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or len(y) == 0 or y.min() < 0:
        raise DataError(f"{cfg.dataset}: labels must be a non-empty list of class indices >= 0")
    parts = _split_pool(np.arange(len(y)), y, cfg.num_clients, cfg, cfg.dataset, _rng(cfg.seed, _CLIENTS, 0))
    return [p.tolist() for p in parts]


def _validation_split(labels: np.ndarray, train: np.ndarray, num_classes: int, cfg: PartitionConfig,
                      duplicate_groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``holdout: validation``: (train, validation) indices of the dataset, the validation images
    the stratified ``test_fraction`` split of the training images ``train`` (duplicate groups kept
    whole), drawn with the generators of stage ``(seed, validation, c)``."""
    position = {int(i): p for p, i in enumerate(train)}
    groups = [[position[int(i)] for i in g] for g in duplicate_groups if all(int(i) in position for i in g)]
    kept, validation = _stratified_split(labels[train], num_classes, cfg.test_fraction, cfg.seed, groups,
                                         stage=_VALIDATION)
    return train[kept], train[validation]


def _stratified_split(labels: np.ndarray, num_classes: int, test_fraction: float, seed: int,
                      duplicate_groups: Sequence[Sequence[int]] = (), stage: int = _SPLIT,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; class ``c``'s units are shuffled by its own generator
    (seed, split, c). A unit is one image, or one duplicate group (placed whole); units fill the
    class's test count in shuffled order, a unit too large for the places left being skipped.
    Without duplicates this is the first ``_num_test`` images of the shuffled class."""
    members = {int(i): [int(i)] for i in range(len(labels))}  # unit id (first index) -> images
    for g in duplicate_groups:
        g = [int(i) for i in g]
        for i in g:
            del members[i]
        if len(set(labels[g].tolist())) == 1:  # copies under different labels stay in training
            members[g[0]] = g
    test = []
    for c in range(num_classes):
        units = np.array([u for u in np.flatnonzero(labels == c) if int(u) in members], dtype=np.int64)
        room = _num_test(int(np.sum(labels == c)), test_fraction)
        for u in _rng(seed, stage, c).permutation(units):
            if room == 0:
                break
            if len(members[int(u)]) <= room:
                test.extend(members[int(u)])
                room -= len(members[int(u)])
    test = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), test), test


def _num_test(n: int, test_fraction: float) -> int:
    if n < 2:
        return 0
    return min(max(int(np.floor(test_fraction * n + 0.5)), 1), n - 1)


def _split_pool(pool: np.ndarray, y: np.ndarray, k: int, cfg: PartitionConfig, name: str,
                rng: np.random.Generator) -> list[np.ndarray]:
    """The pool's indices over ``k`` clients (each sorted)."""
    if cfg.scheme == "iid":
        parts = np.array_split(rng.permutation(pool), k)
    elif cfg.scheme == "dirichlet":
        parts = _dirichlet(pool, y, k, cfg, name, rng)
    else:
        parts = _pathological(pool, y, k, cfg, name, rng)
    parts = [np.sort(p).astype(np.int64) for p in parts]
    small = [i for i, p in enumerate(parts) if len(p) < cfg.min_samples_per_client]
    if small:
        raise DataError(
            f"{name}: client(s) {small} get fewer than min_samples_per_client="
            f"{cfg.min_samples_per_client} of {len(pool)} training images with scheme="
            f"{cfg.scheme!r}, num_clients={k}: use fewer clients or a smaller "
            f"min_samples_per_client")
    return parts


def _dirichlet(pool: np.ndarray, y: np.ndarray, k: int, cfg: PartitionConfig, name: str,
               rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(y[pool])
    for _ in range(MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in classes:
            idx = rng.permutation(pool[y[pool] == c])
            p = rng.dirichlet(np.full(k, cfg.alpha))
            if not np.all(np.isfinite(p)):
                break
            # largest remainder, not floor(cumsum(p) * n) cuts: those hand the last client at
            # least one image of every class whatever its p, softening the skew
            sizes = _largest_remainder(p, len(idx), rng)
            for i, chunk in enumerate(np.split(idx, np.cumsum(sizes)[:-1])):
                parts[i].append(chunk)
        else:
            out = [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]
            if min(len(p) for p in out) >= cfg.min_samples_per_client:
                return out
    raise DataError(
        f"{name}: after {MAX_DIRICHLET_ATTEMPTS} Dirichlet draws (num_clients={k}, "
        f"alpha={cfg.alpha}) some client still had fewer than min_samples_per_client="
        f"{cfg.min_samples_per_client} of {len(pool)} training images: use fewer clients, a "
        f"larger alpha or a smaller min_samples_per_client")


def _pathological(pool: np.ndarray, y: np.ndarray, k: int, cfg: PartitionConfig, name: str,
                  rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(y[pool])
    per = cfg.classes_per_client
    if per > len(classes):
        raise ConfigError(f"classes_per_client={per} exceeds the {len(classes)} classes of "
                          f"{name!r}: use at most {len(classes)}")
    order = rng.permutation(classes)
    clients = rng.permutation(k)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for slot in range(per * k):  # round-robin: k*N >= C covers every class; a client's are distinct
        holders[int(order[slot % len(order)])].append(int(clients[slot // per]))
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for c in classes:
        who = holders[int(c)]
        if not who:
            continue
        idx = rng.permutation(pool[y[pool] == c])
        if len(idx) < len(who):
            raise DataError(f"{name}: class {int(c)} has {len(idx)} training images but "
                            f"{len(who)} clients hold it (num_clients={k}, classes_per_client="
                            f"{per}): use fewer clients or fewer classes per client")
        for i, chunk in zip(rng.permutation(who), np.array_split(idx, len(who))):
            parts[i].append(chunk)
    return [np.concatenate(p) for p in parts]


def _novel_tests(novel_test: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The pooled novel-class test images over ``k`` clients (sorted each): per class, shuffled and
    cut into ``k`` near-equal parts, the larger parts going to a seeded random order of clients."""
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for c in np.unique(y[novel_test]):
        images = rng.permutation(novel_test[y[novel_test] == c])
        for i, chunk in zip(rng.permutation(k), np.array_split(images, k)):
            parts[int(i)].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _few_shot(shares: list[np.ndarray], y: np.ndarray, shots: int,
              rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for share in shares:
        keep = [rng.permutation(share[y[share] == c])[:shots] for c in np.unique(y[share])]
        out.append(np.sort(np.concatenate(keep)))
    return out


def _largest_remainder(weights: Sequence[float] | np.ndarray, total: int,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """``total`` units over ``weights`` (``[k]``, >= 0, not all 0) as integers summing to
    ``total``: each count is the floor or the ceiling of its ideal share ``total * w / sum(w)``,
    the leftover units going to the largest fractional parts. Ties go in a random order drawn
    from ``rng`` (so that no position is favoured) or, without ``rng``, to the lower index.
    Integer weights are split exactly (no float rounding decides a tie)."""
    w = np.asarray(weights)
    if np.issubdtype(w.dtype, np.integer):
        w = w.astype(np.int64)
        counts, remainder = np.divmod(total * w, w.sum())
    else:
        ideal = total * w.astype(float) / w.sum()
        counts = np.floor(ideal).astype(np.int64)
        remainder = ideal - counts
    rest = total - int(counts.sum())
    tie = rng.permutation(len(w)) if rng is not None else np.arange(len(w))
    counts[np.lexsort((tie, -remainder))[:rest]] += 1
    return counts


def _test_quota(share_hist: Sequence[int], available: np.ndarray, ratio: float) -> np.ndarray:
    """Test images per class for a client: ``round(n * ratio)`` spread over the share's classes by
    largest remainder (ties: lower class first), capped by the pooled test images available."""
    share = np.asarray(share_hist, dtype=np.int64)
    total = max(int(np.floor(share.sum() * ratio + 0.5)), 1)
    quota = _largest_remainder(share, total)
    return np.minimum(quota, np.asarray(available, dtype=np.int64))


def _client_tests(shares: list[np.ndarray], y: np.ndarray, test: np.ndarray, num_classes: int,
                  cfg: PartitionConfig, name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Each client's test indices (sorted) from the pooled ``test`` by ``cfg.test_scheme``."""
    ratio = cfg.test_fraction / (1 - cfg.test_fraction)
    by_class = [test[y[test] == c] for c in range(num_classes)]
    available = np.array([len(b) for b in by_class])
    quotas = np.array([_test_quota(_histogram(y[share], num_classes), available, ratio)
                       for share in shares])  # [clients, classes]
    if cfg.test_scheme == "disjoint":
        for c in np.flatnonzero(quotas.sum(axis=0) > available):  # more asked than the pool holds
            quotas[:, c] = _largest_remainder(quotas[:, c], int(available[c]), rng)
    empty = [i for i, q in enumerate(quotas) if q.sum() == 0]
    if empty:
        raise DataError(f"{name}: client(s) {empty} have no test images (their classes have none "
                        f"left in the pooled test set, test_scheme={cfg.test_scheme!r}): raise "
                        f"test_fraction, use fewer clients"
                        + (" or test_scheme='shared_pool'" if cfg.test_scheme == "disjoint" else ""))
    if cfg.test_scheme == "shared_pool":  # independent draws: clients may share test images
        return [np.sort(np.concatenate([rng.choice(by_class[c], size=q, replace=False)
                                        for c, q in enumerate(quota) if q]))
                for quota in quotas]
    picks: list[list[np.ndarray]] = [[] for _ in shares]
    for c in range(num_classes):  # deal each class's shuffled test images out, no image twice
        dealt = np.split(rng.permutation(by_class[c]), np.cumsum(quotas[:, c]))
        for i in range(len(shares)):
            picks[i].append(dealt[i])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in picks]


# --- datasets ----------------------------------------------------------------------------------

def partition_dataset(dataset: "SceneDataset", cfg: PartitionConfig) -> Partition:
    """:func:`build_partition` over a loaded :class:`~fedrs.data.scenes.SceneDataset`."""
    if not _same_dataset(cfg.dataset, dataset.name):
        raise ConfigError(f"the partition config is for {cfg.dataset!r} but the dataset is "
                          f"{dataset.name!r}: load {cfg.dataset!r} or set dataset={dataset.name!r}")
    return build_partition(dataset.labels, dataset.classnames, replace(cfg, dataset=dataset.name),
                           content_hashes=_hashes_of(dataset))


def partition_cross_domain(datasets: Sequence["SceneDataset"], cfg: PartitionConfig) -> Partition:
    """:func:`build_cross_domain_partition` over loaded datasets (in ``cfg.cross_domain`` order)."""
    return build_cross_domain_partition(
        [(d.name, d.labels, d.classnames) for d in datasets], None, cfg,
        content_hashes=[_hashes_of(d) for d in datasets])


def build_fed_rsic(name: str, root: str | Path | None = None, **overrides: Any) -> Partition:
    """Load the data of the named configuration from the data root and build its partition."""
    from fedrs.data import load_scene_dataset  # lazy: the data package imports this module

    cfg = fed_rsic_config(name, **overrides)
    if cfg.cross_domain is not None:
        return partition_cross_domain([load_scene_dataset(n, root) for n in cfg.cross_domain], cfg)
    return partition_dataset(load_scene_dataset(cfg.dataset, root), cfg)


# --- helpers -----------------------------------------------------------------------------------

def _rng(seed: int, *key: int) -> np.random.Generator:
    """The child generator of ``seed`` for a stage (and a class or client group)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _histogram(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


def _check_labels(name: str, labels: Sequence[int], classnames: Sequence[str]) -> np.ndarray:
    y = np.asarray(list(labels))
    if len(classnames) == 0 or len(set(classnames)) != len(classnames):
        raise DataError(f"{name}: class names must be non-empty and distinct, got {list(classnames)[:5]}...")
    if y.size == 0:
        raise DataError(f"{name}: no samples to partition: import the dataset first")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(classnames):
        raise DataError(f"{name}: labels must be integers in [0, {len(classnames)}) (indices into "
                        f"the class names): pass dataset.labels")
    return y.astype(np.int64)


def _hashes_of(dataset: Any) -> list[str] | None:
    """A loaded dataset's per-image content hashes (``SceneDataset.hashes``), None when it has none."""
    return list(getattr(dataset, "hashes", None) or []) or None


def _check_hashes(name: str, hashes: Sequence[str] | None, n: int) -> list[str] | None:
    if hashes is not None and len(hashes) != n:
        raise DataError(f"{name}: {len(hashes)} content hashes for {n} images: pass one per image "
                        f"(dataset.hashes) or None")
    return None if hashes is None else [str(h) for h in hashes]


def _duplicate_groups(hashes: Sequence[str] | None) -> list[list[int]]:
    """Indices of images sharing a non-empty content hash: one sorted list per group of two or
    more, ordered by first index (``[]`` without hashes)."""
    where: dict[str, list[int]] = {}
    for i, digest in enumerate(hashes or []):
        if digest:
            where.setdefault(digest, []).append(i)
    return sorted(g for g in where.values() if len(g) > 1)


def _same_dataset(a: str, b: str) -> bool:
    spec_a, spec_b = find_spec(a), find_spec(b)
    if spec_a is not None and spec_b is not None:
        return spec_a is spec_b
    return normalise(a) == normalise(b)


def _sorted_unique(x: np.ndarray) -> bool:
    return bool(np.all(np.diff(x) > 0))


def _in_range(x: np.ndarray, lo: int, hi: int) -> bool:
    return bool(x.size == 0 or (x.min() >= lo and x.max() < hi))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DataError(message)


__all__ = [
    "PartitionConfig", "ADDED_DEFAULTS", "CLASS_SPLITS", "num_base_classes", "Partition", "ClientSplit", "Domain",
    "SCHEMES", "FED_RSIC_CONFIGS",
    "FED_RSIC_OFFLINE", "DEFAULT_LABEL_MAP", "fed_rsic_config", "harmonised_classnames",
    "build_partition", "build_cross_domain_partition", "partition_dataset",
    "partition_cross_domain", "build_fed_rsic", "split_by_label",
]
