"""Fed-RSIC builder (fedrs.data.partition) on synthetic labels."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from fedrs.config import ConfigError, from_dict
from fedrs.data.partition import (
    DEFAULT_LABEL_MAP,
    FED_RSIC_CONFIGS,
    Partition,
    PartitionConfig,
    build_cross_domain_partition,
    build_partition,
    fed_rsic_config,
    harmonised_classnames,
    partition_dataset,
)
from fedrs.data.registry import SPECS
from fedrs.errors import DataError

COUNTS = [40, 35, 30, 30, 25, 25, 20, 20, 15, 10]  # 250 images, 10 imbalanced classes
LABELS = np.repeat(np.arange(len(COUNTS)), COUNTS).tolist()
NAMES = [f"class{c}" for c in range(len(COUNTS))]


def build(**kw) -> Partition:
    return build_partition(LABELS, NAMES, PartitionConfig(**{"dataset": "toy", **kw}))


def hist(p: Partition, indices) -> np.ndarray:
    return np.bincount(p.labels[list(indices)], minlength=len(p.classnames))


# --- determinism and the pooled split ------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs():
    assert build(seed=3).to_json() == build(seed=3).to_json()
    assert build(seed=3).to_json() != build(seed=4).to_json()


def test_stratified_split_per_class():
    p = build(test_fraction=0.2)
    assert hist(p, p.test_indices).tolist() == [round(0.2 * n) for n in COUNTS]
    assert sorted(p.train_indices + p.test_indices) == list(range(len(LABELS)))


@pytest.mark.parametrize("kw", [dict(scheme="iid", num_clients=3), dict(num_clients=7, alpha=0.1),
                                dict(scheme="pathological", num_clients=4, classes_per_client=3),
                                dict(few_shot=2)])
def test_pooled_test_set_independent_of_scheme_and_clients(kw):
    assert build(**kw).test_indices == build().test_indices


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological"])
def test_every_training_image_assigned_exactly_once(scheme):
    p = build(scheme=scheme, num_clients=5)
    assigned = sorted(i for c in p.clients for i in c.train_indices)
    assert assigned == p.train_indices
    for c in p.clients:
        assert set(c.test_indices) <= set(p.test_indices)
        assert c.class_histogram == hist(p, c.train_indices).tolist()


# --- exact duplicates ----------------------------------------------------------------------------

def _hashes_with_duplicates() -> tuple[list[str], list[list[int]]]:
    """Distinct hashes, except copies: pairs in class 0 and 9 (10 images), a triple in class 1, and
    one image of class 2 copied under class 3's label."""
    hashes = [f"h{i}" for i in range(len(LABELS))]
    groups = [[0, 1], [5, 6], [40, 41, 42], [75, 110], [240, 241]]
    for g in groups:
        for i in g[1:]:
            hashes[i] = hashes[g[0]]
    return hashes, groups


def test_duplicates_never_straddle_train_and_test():
    hashes, groups = _hashes_with_duplicates()
    in_test_ever = set()
    for seed in range(40):
        p = build_partition(LABELS, NAMES, PartitionConfig("toy", seed=seed), content_hashes=hashes)
        assert p.domains[0].duplicate_groups == groups
        test = set(p.test_indices)
        for g in groups:
            assert len(test & set(g)) in (0, len(g)), (seed, g)
        assert not test & {75, 110}  # the copies under two labels stay in training
        in_test_ever |= {tuple(g) for g in groups if g[0] in test}
        # the class's test count still holds (the groups' classes have single images to fill it)
        assert hist(p, p.test_indices).tolist() == [round(0.2 * n) for n in COUNTS]
    assert in_test_ever == {(0, 1), (5, 6), (40, 41, 42), (240, 241)}  # groups do reach the test set


def test_without_duplicates_the_pooled_split_is_unchanged():
    hashes = [f"h{i}" for i in range(len(LABELS))]
    with_hashes = build_partition(LABELS, NAMES, PartitionConfig("toy", seed=2), content_hashes=hashes)
    assert with_hashes.to_json() == build(seed=2).to_json()
    assert with_hashes.domains[0].duplicate_groups == []


def test_duplicate_groups_round_trip_and_are_checked_against_the_dataset(tmp_path):
    hashes, groups = _hashes_with_duplicates()
    p = build_partition(LABELS, NAMES, PartitionConfig("toy", num_clients=3), content_hashes=hashes)
    assert Partition.load(p.save(tmp_path / "d.json")).domains[0].duplicate_groups == groups
    p.check_dataset(SimpleNamespace(name="toy", labels=LABELS, classnames=NAMES, hashes=hashes))
    with pytest.raises(DataError, match="not the data"):  # duplicates unknown to the partition
        build(num_clients=3).check_dataset(
            SimpleNamespace(name="toy", labels=LABELS, classnames=NAMES, hashes=hashes))
    with pytest.raises(DataError, match="249 content hashes for 250 images"):
        build_partition(LABELS, NAMES, PartitionConfig("toy"), content_hashes=hashes[1:])


def test_cross_domain_groups_duplicates_per_dataset():
    (a, b) = _toy_domains()
    hashes_a = ["x"] * 2 + [f"a{i}" for i in range(len(a[1]) - 2)]  # images 0 and 1 of A are copies
    p = build_cross_domain_partition([a, b], [2, 2], PartitionConfig("toy-x"),
                                     content_hashes=[hashes_a, None])
    assert [d.duplicate_groups for d in p.domains] == [[[0, 1]], []]
    assert len({0, 1} & set(p.test_indices)) in (0, 2)


@pytest.mark.realdata
def test_ucmerced_airplane_copies_stay_on_one_side(real_data_source, tmp_path_factory):
    from fedrs.data import import_sources, load_scene_dataset

    root = tmp_path_factory.mktemp("ucm")
    import_sources([real_data_source / "UCMerced_LandUse.zip"], root=root, progress=False)
    ucm = load_scene_dataset("UCMerced", root)
    pair = [ucm.stems.index("airplane01"), ucm.stems.index("airplane02")]
    sides = set()
    for seed in range(20):
        p = partition_dataset(ucm, fed_rsic_config("Fed-UCMerced", seed=seed))
        assert p.domains[0].duplicate_groups == [pair]
        in_test = [i in set(p.test_indices) for i in pair]
        assert in_test[0] == in_test[1], seed
        sides.add(in_test[0])
    assert sides == {True, False}  # over 20 seeds the pair lands on both sides, together


# --- schemes -------------------------------------------------------------------------------------

def test_iid_is_balanced():
    sizes = build(scheme="iid", num_clients=6).summary()["samples_per_client"]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_small_alpha_is_more_skewed():
    def stats(alpha):
        s = [build(alpha=alpha, num_clients=5, seed=seed).summary() for seed in range(3)]
        return (np.mean([x["mean_classes_per_client"] for x in s]),
                np.mean([x["label_skew_tv"] for x in s]))

    classes_small, skew_small = stats(0.1)
    classes_large, skew_large = stats(10.0)
    assert classes_small < classes_large
    assert skew_small > skew_large


def test_dirichlet_last_client_is_not_special():
    # floor(cumsum(p) * n) cuts gave the last client >= 1 image of every class in every seed
    # (9.85 of 10 classes on average here, the others about 4)
    held = np.array([[c.num_classes for c in build(alpha=0.1, num_clients=5, seed=seed).clients]
                     for seed in range(100)])
    mean = held.mean(axis=0)
    assert abs(mean[-1] - mean[:-1].mean()) < 0.5
    assert mean.max() - mean.min() < 0.5


def test_largest_remainder_rounds_each_share_down_or_up_and_breaks_ties_by_the_seed():
    from fedrs.data.partition import _largest_remainder

    rng = np.random.default_rng(0)
    for _ in range(200):
        p, n = rng.dirichlet(np.full(6, 0.3)), int(rng.integers(0, 50))
        sizes = _largest_remainder(p, n, rng)
        assert sizes.sum() == n and np.all((sizes == np.floor(p * n)) | (sizes == np.ceil(p * n)))
    # equal shares: which client gets the extra unit is drawn, not always the first
    firsts = {tuple(_largest_remainder([1, 1, 1], 1, np.random.default_rng(s))) for s in range(30)}
    assert firsts == {(1, 0, 0), (0, 1, 0), (0, 0, 1)}
    assert _largest_remainder([1, 1, 1], 1).tolist() == [1, 0, 0]  # no generator: lower index


def test_pathological_exact_classes_and_coverage():
    p = build(scheme="pathological", num_clients=5, classes_per_client=2)  # 5*2 = 10 classes
    assert all(c.num_classes == 2 for c in p.clients)
    held = {y for c in p.clients for y, n in enumerate(c.class_histogram) if n}
    assert held == set(range(len(COUNTS)))


def test_pathological_fewer_slots_than_classes_leaves_classes_unheld():
    p = build(scheme="pathological", num_clients=3, classes_per_client=2)  # 6 < 10 classes
    assert all(c.num_classes == 2 for c in p.clients)
    held = {y for c in p.clients for y, n in enumerate(c.class_histogram) if n}
    assert len(held) == 6
    assigned = sorted(i for c in p.clients for i in c.train_indices)
    assert assigned == [i for i in p.train_indices if p.labels[i] in held]


def test_few_shot_at_most_k_per_class_and_at_most_once():
    p = build(few_shot=3, num_clients=4)
    for c in p.clients:
        assert max(c.class_histogram) <= 3
        assert c.class_histogram == [min(3, s) for s in c.share_histogram]
    assigned = [i for c in p.clients for i in c.train_indices]
    assert len(assigned) == len(set(assigned))


def test_client_test_split_follows_its_label_distribution():
    # each client's full request, capped by the pool only: the shared_pool scheme (the disjoint
    # one divides oversubscribed classes, see test_disjoint_client_tests_divide_what_the_pool_holds)
    p = build(alpha=0.3, num_clients=4, test_scheme="shared_pool")
    available = hist(p, p.test_indices)
    for c in p.clients:
        test, train = hist(p, c.test_indices), np.asarray(c.class_histogram)
        size = int(train.sum() * 0.2 / 0.8 + 0.5)  # the pool's train:test ratio, half up
        ideal = size * train / train.sum()
        assert test.sum() <= size
        # within one image of the client's own proportions, unless the class ran out of test images
        assert np.all((np.abs(test - ideal) < 1) | (test == available))
        assert set(np.flatnonzero(test)) <= set(np.flatnonzero(train))


def _requests(p: Partition) -> np.ndarray:
    """Each client's test request per class, as the module docstring states it: round(n * 0.25)
    spread by its share (largest remainder, lower class first), capped by the pool. [clients, C]"""
    available = hist(p, p.test_indices)
    out = []
    for c in p.clients:
        share = np.asarray(c.share_histogram)
        total = max(int(share.sum() * 0.25 + 0.5), 1)
        ideal = total * share / share.sum()
        quota = np.floor(ideal).astype(int)
        for k in sorted(range(len(share)), key=lambda k: (-(ideal[k] - quota[k]), k))[:total - quota.sum()]:
            quota[k] += 1
        out.append(np.minimum(quota, available))
    return np.array(out)


@pytest.mark.parametrize("kw", [dict(), dict(alpha=0.1, num_clients=8), dict(scheme="iid", num_clients=6),
                                dict(scheme="pathological", num_clients=5), dict(few_shot=3, num_clients=4)])
def test_client_test_splits_are_disjoint(kw):
    for seed in range(3):
        p = build(seed=seed, **kw)
        tests = [set(c.test_indices) for c in p.clients]
        assert sum(len(t) for t in tests) == len(set().union(*tests))
        s = p.summary()
        assert s["exclusive_test_samples_per_client"] == s["test_samples_per_client"] == [len(t) for t in tests]
        assert s["distinct_test_samples"] == len(set().union(*tests)) <= s["num_test"]


def test_disjoint_client_tests_divide_what_the_pool_holds():
    trimmed = 0
    for seed in range(10):
        p = build(alpha=0.5, num_clients=6, seed=seed)
        asked, available = _requests(p), hist(p, p.test_indices)
        got = np.array([hist(p, c.test_indices) for c in p.clients])
        demand = asked.sum(axis=0)
        # every class hands out what is asked, or all its pooled test images when more is asked
        assert got.sum(axis=0).tolist() == np.minimum(demand, available).tolist()
        # each client gets its request, or the floor/ceiling of its proportional part of the pool
        fair = asked * available / np.maximum(demand, 1)
        assert np.all(np.where(demand > available, (got >= np.floor(fair)) & (got <= np.ceil(fair)),
                               got == asked))
        trimmed += int(np.sum(demand > available))
    assert trimmed > 0  # the oversubscribed case was exercised


def test_shared_pool_draws_overlap_and_the_summary_says_so():
    # UC Merced's shape: 21 classes x 100, 10 clients: the shared pool's draws overlap
    labels = np.repeat(np.arange(21), 100).tolist()
    names = [f"c{k}" for k in range(21)]
    shared = build_partition(labels, names, PartitionConfig("ucm-like", test_scheme="shared_pool"))
    s = shared.summary()
    assert sum(s["test_samples_per_client"]) >= 400 and s["distinct_test_samples"] < 340
    assert all(e < n for e, n in zip(s["exclusive_test_samples_per_client"], s["test_samples_per_client"]))
    disjoint = build_partition(labels, names, PartitionConfig("ucm-like")).summary()
    assert disjoint["distinct_test_samples"] == sum(disjoint["test_samples_per_client"]) >= 400
    assert shared.train_indices == build_partition(labels, names, PartitionConfig("ucm-like")).train_indices


def test_disjoint_tests_refuse_a_pool_too_small_for_every_client():
    # 4 pooled test images, 8 clients asking for one each: half would get none
    labels, names = np.repeat([0, 1], 10).tolist(), ["a", "b"]
    cfg = PartitionConfig("tiny", scheme="iid", num_clients=8)
    with pytest.raises(DataError, match=r"client\(s\) \[.*\] have no test images.*shared_pool"):
        build_partition(labels, names, cfg)
    shared = build_partition(labels, names, replace(cfg, test_scheme="shared_pool"))
    assert all(len(c.test_indices) == 1 for c in shared.clients)


# --- persistence ---------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    p = build(few_shot=4)
    path = p.save(tmp_path / "fed.json")
    assert path.read_text() == p.to_json()
    q = Partition.load(path)
    assert q.to_json() == p.to_json()
    data = json.loads(path.read_text())
    assert data["summary"]["samples_per_client"] == [len(c.train_indices) for c in p.clients]
    assert data["clients"][0]["class_histogram"] == p.clients[0].class_histogram


def _tamper_move(d):  # one training image moved from client 0 to client 1
    i = d["clients"][0]["train_indices"].pop()
    d["clients"][1]["train_indices"] = sorted(d["clients"][1]["train_indices"] + [i])


def _tamper_duplicate(d):  # client 1 also gets client 0's first image
    d["clients"][1]["train_indices"] = sorted(d["clients"][1]["train_indices"]
                                              + d["clients"][0]["train_indices"][:1])


def _tamper_share_test_image(d):  # client 1 swaps a test image for one of client 0's, same class
    labels = d["domains"][0]["labels"]
    mine = {labels[i]: i for i in d["clients"][1]["test_indices"]}
    i = next(i for i in d["clients"][0]["test_indices"] if labels[i] in mine)
    tests = d["clients"][1]["test_indices"]
    tests.remove(mine[labels[i]])
    d["clients"][1]["test_indices"] = sorted(tests + [i])


@pytest.mark.parametrize("tamper", [
    _tamper_move,
    _tamper_duplicate,
    lambda d: d["clients"][0]["class_histogram"].__setitem__(0, 999),
    lambda d: d["clients"][0]["test_indices"].append(10_000),
    lambda d: d["clients"][0]["test_indices"].append(d["train_indices"][0]),
    lambda d: d["domains"][0]["labels"].__setitem__(0, 5),
    lambda d: d["test_indices"].pop(),
    lambda d: d["config"].__setitem__("num_clients", 3),
    lambda d: d["config"].__setitem__("alpha", -1),
    lambda d: d["summary"].__setitem__("num_train", 1),
    lambda d: d.pop("clients"),
    lambda d: d.__setitem__("format", "something-else"),
    lambda d: d["domains"][0]["duplicate_groups"].append(sorted([d["train_indices"][0],
                                                                 d["test_indices"][0]])),
    _tamper_share_test_image,
], ids=["moved", "duplicated", "histogram", "out-of-range", "train-as-test", "label",
        "pooled-test", "num-clients", "config", "summary", "missing", "format", "straddling-copies",
        "shared-test-image"])
def test_load_rechecks_invariants(tmp_path, tamper):
    path = build(num_clients=4).save(tmp_path / "fed.json")
    data = json.loads(path.read_text())
    tamper(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="invalid partition manifest.*rebuild"):
        Partition.load(path)


def test_load_names_an_older_manifest_version(tmp_path):
    data = json.loads(build(num_clients=4).to_json())
    data["version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="v1 manifest, built before duplicate-aware.*rebuild"):
        Partition.load(tmp_path / "old.json")


def test_load_unreadable(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        Partition.load(tmp_path / "bad.json")


# --- bad configurations --------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    (dict(alpha=0), "alpha"), (dict(alpha=-0.5), "alpha"), (dict(num_clients=0), "num_clients"),
    (dict(test_fraction=0.0), "test_fraction"), (dict(test_fraction=1.0), "test_fraction"),
    (dict(classes_per_client=0), "classes_per_client"), (dict(scheme="shards"), "scheme"),
    (dict(few_shot=0), "few_shot"), (dict(min_samples_per_client=0), "min_samples"),
    (dict(test_scheme="overlap"), r"test_scheme must be one of \['disjoint', 'shared_pool'\]"),
    (dict(clients_per_dataset=[2, 2]), "cross_domain"),
    (dict(cross_domain=["A", "A"]), "distinct"),
    (dict(cross_domain=["A", "B"], num_clients=4, clients_per_dataset=[1, 2]), "sums to"),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        PartitionConfig(dataset="toy", **kw)


def test_bad_config_from_yaml_data():
    with pytest.raises(ConfigError, match="scheme"):
        from_dict(PartitionConfig, {"dataset": "toy", "scheme": "shards"})
    with pytest.raises(ConfigError, match="test_scheme.*disjoint.*shared_pool.*'pooled'"):
        from_dict(PartitionConfig, {"dataset": "toy", "test_scheme": "pooled"})
    with pytest.raises(ConfigError, match="unknown key"):
        fed_rsic_config("Fed-UCMerced", clients=3)
    with pytest.raises(ConfigError, match="unknown Fed-RSIC configuration"):
        fed_rsic_config("Fed-Nowhere")


def test_bad_configs_against_the_data():
    with pytest.raises(ConfigError, match="num_clients=300 exceeds the 200 training images"):
        build(num_clients=300)
    with pytest.raises(ConfigError, match="classes_per_client=11 exceeds the 10 classes"):
        build(scheme="pathological", classes_per_client=11)
    with pytest.raises(DataError, match="num_clients=50.*alpha=0.01.*min_samples_per_client=3"):
        build(num_clients=50, alpha=0.01, min_samples_per_client=3)
    with pytest.raises(DataError, match="min_samples_per_client=10.*fewer clients"):
        build(scheme="iid", num_clients=40, min_samples_per_client=10)
    with pytest.raises(DataError, match="labels must be integers"):
        build_partition([0, 1, 7], ["a", "b"], PartitionConfig("toy", num_clients=1))
    with pytest.raises(ConfigError, match="cross-domain"):
        build_partition(LABELS, NAMES, fed_rsic_config("Fed-CrossDomain"))


# --- cross-domain --------------------------------------------------------------------------------

def _toy_domains():
    a = ("A", np.repeat([0, 1, 2], 20).tolist(), ["forest", "beach", "denseresidential"])
    b = ("B", np.repeat([0, 1, 2, 3], 15).tolist(), ["Forest", "Parking", "DenseResidential", "Port"])
    return [a, b]


def test_cross_domain_harmonisation_on_a_toy_label_space():
    p = build_cross_domain_partition(_toy_domains(), [2, 3], PartitionConfig("toy-x"),
                                     label_map={"B": {"Parking": "parking lot"}})
    assert p.classnames == ["beach", "dense residential", "forest", "parking lot", "port"]
    assert p.config.num_clients == 5 and p.config.cross_domain == ["A", "B"]
    assert [c.dataset for c in p.clients] == ["A", "A", "B", "B", "B"]
    assert p.refs([0, 60, 119]) == [("A", 0), ("B", 0), ("B", 59)]
    forest = p.classnames.index("forest")
    assert p.labels[0] == forest and p.labels[60] == forest
    # each client's indices stay inside its own dataset; the pooled test set is per dataset
    for c in p.clients:
        assert {d for d, _ in p.refs(c.train_indices + c.test_indices)} == {c.dataset}
    alone = build_partition(*_toy_domains()[1][1:], PartitionConfig("B", num_clients=3))
    assert [i for d, i in p.refs(p.test_indices) if d == "B"] == alone.test_indices


def test_cross_domain_round_trip_and_bad_label_map(tmp_path):
    p = build_cross_domain_partition(_toy_domains(), None, PartitionConfig("toy-x", num_clients=4))
    assert Partition.load(p.save(tmp_path / "x.json")).to_json() == p.to_json()
    with pytest.raises(ConfigError, match="unknown class folder"):
        build_cross_domain_partition(_toy_domains(), None, PartitionConfig("x", num_clients=4),
                                     label_map={"A": {"Forest": "forest"}})


def test_default_harmonisation_of_the_shipped_datasets():
    named = {n: harmonised_classnames(n, SPECS[n].classes) for n in ("UCMerced", "RSSCN7", "EuroSAT")}
    named["AID-holdout"] = harmonised_classnames("AID-holdout", SPECS["AID"].classes)
    for n, table in DEFAULT_LABEL_MAP.items():
        if n in named:
            assert set(table) == set(SPECS["AID" if n == "AID-holdout" else n].classes)
    shared = lambda name: sorted(n for n, cs in named.items() if name in cs)  # noqa: E731
    assert shared("forest") == ["AID-holdout", "EuroSAT", "RSSCN7", "UCMerced"]
    assert shared("parking lot") == ["AID-holdout", "RSSCN7", "UCMerced"]
    assert shared("dense residential") == ["AID-holdout", "UCMerced"]
    assert shared("river") == ["AID-holdout", "EuroSAT", "UCMerced"]
    assert shared("farmland") == ["AID-holdout"]  # near-synonyms stay apart
    assert len(set().union(*named.values())) == 68 - 15  # 68 classes, 15 merged into others


# --- named configurations and datasets -----------------------------------------------------------

def test_named_configurations():
    for name in FED_RSIC_CONFIGS:
        assert isinstance(fed_rsic_config(name), PartitionConfig)
    assert fed_rsic_config("Fed-AID").dataset == "AID-holdout"
    assert fed_rsic_config("fed-nwpu", alpha=0.1, num_clients=20).alpha == 0.1
    assert fed_rsic_config("Fed-CrossDomain").client_groups() == [3, 3, 3, 3]


def test_partition_dataset_uses_labels_and_checks_the_name():
    ds = SimpleNamespace(name="UCMerced", labels=LABELS, classnames=NAMES)
    p = partition_dataset(ds, fed_rsic_config("Fed-UCMerced", num_clients=3))
    assert p.dataset == "UCMerced" and p.num_clients == 3
    p.check_dataset(ds)
    with pytest.raises(DataError, match="not the data"):
        p.check_dataset(SimpleNamespace(name="UCMerced", labels=LABELS[::-1], classnames=NAMES))
    with pytest.raises(ConfigError, match="for 'RSSCN7'"):
        partition_dataset(ds, fed_rsic_config("Fed-RSSCN7"))


@pytest.mark.parametrize("kw, label", [
    (dict(scheme="iid", num_clients=3), "iid, 3 clients"),
    (dict(scheme="dirichlet", alpha=0.1), "dirichlet(alpha=0.1), 10 clients"),
    (dict(scheme="pathological", classes_per_client=2, num_clients=5, few_shot=8),
     "pathological(k=2), 5 clients, 8-shot"),
    (dict(scheme="iid", num_clients=3, test_scheme="shared_pool"), "iid, 3 clients, shared-pool tests"),
])
def test_describe_labels_a_split_for_metrics(kw, label):
    from fedrs.data.partition import PartitionConfig

    assert PartitionConfig(dataset="UCMerced", **kw).describe() == label
    assert PartitionConfig(dataset="UCMerced", **kw).describe(num_clients=7).split(", ")[1] == "7 clients"


def test_split_by_label_is_the_partitions_client_stage():
    from fedrs.data.partition import PartitionConfig, split_by_label

    labels = [c for c in range(6) for _ in range(20)]
    cfg = PartitionConfig(dataset="Synth", num_clients=4, scheme="pathological", classes_per_client=2, seed=1)
    shards = split_by_label(labels, cfg)
    assert sorted(sum(shards, [])) == list(range(len(labels)))
    assert all(len({labels[i] for i in s}) <= 2 for s in shards)
    assert split_by_label(labels, cfg) == shards  # deterministic in the seed
    with pytest.raises(ConfigError, match="few_shot"):
        split_by_label(labels, PartitionConfig(dataset="Synth", num_clients=2, few_shot=3))


# --- validation holdout ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3])
def test_validation_holdout_sets_the_test_images_aside_and_scores_a_split_of_training(seed):
    """holdout: validation keeps the usual test images out of everything (held_out_indices equals
    the test split of holdout: test), and the stratified test_fraction split of the training images
    takes the test split's place; the clients train on the rest only."""
    hashes, groups = _hashes_with_duplicates()
    usual = build_partition(LABELS, NAMES, PartitionConfig("toy", seed=seed), content_hashes=hashes)
    p = build_partition(LABELS, NAMES, PartitionConfig("toy", seed=seed, holdout="validation"),
                        content_hashes=hashes)
    assert p.held_out_indices == usual.test_indices
    held, validation, train = set(p.held_out_indices), set(p.test_indices), set(p.train_indices)
    assert validation <= set(usual.train_indices) and not validation & held and not train & held
    assert len(held) + len(validation) + len(train) == len(LABELS)
    train_counts = hist(usual, usual.train_indices)
    expect = [round(0.2 * n) for n in train_counts]
    got = hist(p, p.test_indices).tolist()
    assert all(g <= e for g, e in zip(got, expect)) and sum(got) >= sum(expect) - 3  # groups may skip a place
    for c in p.clients:  # nobody trains or is scored on a held-out image
        assert not (set(c.train_indices) | set(c.test_indices)) & held
        assert set(c.test_indices) <= validation
    for g in groups:  # duplicates stay whole on every side
        for side in (held, validation, train):
            assert len(side & set(g)) in (0, len(g))
    assert "validation holdout" in p.config.describe()


def test_validation_holdout_round_trips_and_leaves_test_manifests_as_they_were(tmp_path):
    p = build(seed=2, holdout="validation")
    again = Partition.load(p.save(tmp_path / "val.json"))
    assert again.held_out_indices == p.held_out_indices and again.to_json() == p.to_json()
    plain = json.loads(build(seed=2).to_json())
    assert "holdout" not in plain["config"] and "held_out_indices" not in plain  # byte-identical to before
    tampered = json.loads(p.to_json())
    tampered["held_out_indices"] = tampered["held_out_indices"][1:]  # an image belongs nowhere
    with pytest.raises(DataError, match="exactly once"):
        Partition.from_dict(tampered)
    with pytest.raises(ConfigError, match="holdout must be one of"):
        PartitionConfig("toy", holdout="train")
