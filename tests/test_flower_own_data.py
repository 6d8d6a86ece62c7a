"""Clients that bring their own data (issue 15): each SuperNode on its own data root, the server on
none.

Three synthetic shards of a 3-class dataset (class folders named as UC Merced's: airplane, beach,
forest; each shard holds two of them, 8 images each) are copied to three folders and imported
with ``fedrs data import --name`` into three data roots. The run's label space is UC Merced's 21
classes (from the registry: the server needs no data) or a classes file; each client holds a
subset. Checked: the label space and class matching (a clear error naming unknown and missing
classes), the client's own split (the Fed-RSIC pooled split, seeded), the refusals of a node
whose data do not fit the run, FlowerEngine over an in-process grid equal to the in-process
engine on the same three datasets (bit for bit), with a server-side validation dataset, and a
loopback deployment of ``fedrs flower local --node-data`` (TLS + SuperNode authentication, the
server's data root empty) equal to the in-process engine, with both wall times printed.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("flwr", reason="flwr is not installed (pip install 'fedrs[flower]')")

from flower_study import serverapp_identity  # noqa: E402, F401  (autouse fixture)
from flwr.app import ConfigRecord, Context, MessageType, RecordDict  # noqa: E402

from fedrs.config import ConfigError, dump_yaml  # noqa: E402
from fedrs.data import import_sources, load_scene_dataset  # noqa: E402
from fedrs.data.partition import PartitionConfig, build_partition  # noqa: E402
from fedrs.errors import DataError, FedrsError  # noqa: E402
from fedrs.federated.flower.client_app import respond  # noqa: E402
from fedrs.federated.flower.deploy import OwnData, run_config_arg, run_local  # noqa: E402
from fedrs.federated.flower.own_data import (  # noqa: E402
    LabelSpace,
    build_method,
    load_node_dataset,
    match_classes,
    own_split,
    placeholder_clients,
    run_label_space,
    run_own_data,
    run_own_data_inprocess,
    server_split,
    validation_data,
)
from fedrs.federated.flower.server_app import OwnDataFlowerEngine  # noqa: E402
from fedrs.federated.flower.task import (  # noqa: E402
    ARRAYS,
    CLASSES,
    CLIENT_DATA,
    CONFIG,
    PARAMS,
    app_settings,
    client_task,
    to_record,
)
from fedrs.runs import load_run_config, run_config  # noqa: E402

FOLDERS = ["airplane", "beach", "forest"]
SHARDS = [("airplane", "beach"), ("beach", "forest"), ("airplane", "forest")]
PER_CLASS = 8
TIMING = ("time_s",)


def make_images(folder: Path, classes, start: int, rng) -> None:
    from PIL import Image

    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        k = FOLDERS.index(c)
        for i in range(start, start + PER_CLASS):
            arr = rng.integers(0, 90, (32, 32, 3)) + np.eye(3, dtype=int)[k] * 160
            Image.fromarray(arr.astype("uint8")).save(folder / c / f"{c}_{i:02d}.png")


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Three data roots (one per institution), a server validation root, an empty server data
    root, params.yaml (UC Merced's label space) and the Flower processes' environment."""
    base = tmp_path_factory.mktemp("own-data")
    rng = np.random.default_rng(0)
    roots, names = [], []
    for i, shard in enumerate(SHARDS):
        src = base / f"copy-{i}"  # the institution's own folder of class sub-folders
        make_images(src, shard, 10 * i, rng)
        root, name = base / f"site-{i}", f"Site{'ABC'[i]}"
        import_sources([src], root=root, progress=False, name=name)
        shutil.rmtree(src)
        roots.append(root)
        names.append(name)
    valid = base / "copy-valid"
    make_images(valid, FOLDERS, 50, rng)
    import_sources([valid], root=base / "server-validation", progress=False, name="Validation")
    (base / "server-data").mkdir()  # the server's data root: empty
    config = {
        "backbone": {"model": "fedrs-rsclip-tiny", "pretrained": "random"},
        "data": {"dataset": "UCMerced", "num_clients": 3, "seed": 0},
        "method": {"name": "fedrsclip"},
        "train": {"rounds": 2, "batch_size": 8, "lr": 0.01, "seed": 0},
        "eval": {"zeroshot_reference": False, "every": 2},  # one message wave fewer
    }
    params = base / "params.yaml"
    params.write_text(yaml.safe_dump(config))
    classes = base / "classes.txt"
    classes.write_text("# the study's classes\nairplane\nbeach | seaside\nforest\nriver\n")
    env = {"FEDRS_CACHE": str(base / "cache"), "FEDRS_DATA": str(base / "server-data"),
           "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDRS_CACHE", env["FEDRS_CACHE"])
        mp.setenv("FEDRS_DATA", env["FEDRS_DATA"])
        yield SimpleNamespace(base=base, roots=roots, names=names, params=params, classes=classes, env=env,
                              validation=base / "server-validation",
                              datasets=[load_scene_dataset(n, r) for n, r in zip(names, roots)])


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def assert_same_run(out: Path, metrics: dict, ref_out: Path, ref: dict) -> None:
    """Same metrics (but engine and times), rounds.csv, clients.csv, split.json and params.yaml."""
    assert metrics["engine"] == "flower" and ref["engine"] == "inprocess"
    assert metrics["client_data"] == ref["client_data"] == "own"
    for key in ("personalised_accuracy", "personalised_accuracy_unweighted", "global_accuracy", "final_train_loss",
                "measured_upload_bytes_total", "uploaded_tensors", "private_tensors", "num_clients", "privacy"):
        assert metrics[key] == ref[key], key
    for name in ("rounds.csv", "clients.csv"):
        assert read_csv(out / name) == read_csv(ref_out / name), name
    for name in ("split.json", "params.yaml"):
        assert (out / name).read_text() == (ref_out / name).read_text(), name


# --- label space, classes, own split -------------------------------------------------------------------

def test_label_space_from_the_registry_or_a_classes_file(sites):
    cfg = load_run_config(sites.params)
    ucm = run_label_space(cfg)
    assert len(ucm.names) == 21 and ucm.names[0] == "agricultural land" and ucm.spellings[0] == ("agricultural",)
    assert LabelSpace.from_json(ucm.to_json()) == ucm
    cross = run_label_space(run_config({"data": {"dataset": "X", "num_clients": 2,
                                                 "cross_domain": ["UCMerced", "RSSCN7"]},
                                        "method": {"name": "fedrsclip"}}))
    assert list(cross.names) == sorted(cross.names) and "parking lot" in cross.names
    assert set(cross.spellings[cross.names.index("parking lot")]) == {"parkinglot", "gParking"}
    own = run_label_space(cfg, sites.classes)
    assert own.names == ("airplane", "beach", "forest", "river") and own.spellings[1] == ("seaside",)
    custom = run_config({"data": {"dataset": "MyScenes"}, "method": {"name": "fedrsclip"}})
    with pytest.raises(ConfigError, match=r"cannot read the classes of \['MyScenes'\].*classes in a file"):
        run_label_space(custom)


def test_a_client_may_hold_a_subset_and_unknown_classes_are_named(sites, tmp_path):
    space = run_label_space(load_run_config(sites.params))
    site_a = sites.datasets[0]
    assert site_a.classnames == ["airplane", "beach"]
    assert [space.names[i] for i in match_classes(site_a, space)] == ["airplane", "beach"]
    src = tmp_path / "odd"
    make_images(src, ["beach"], 0, np.random.default_rng(1))
    (src / "beach").rename(src / "Beach_Scenes")
    make_images(src, ["forest"], 0, np.random.default_rng(1))
    (src / "forest").rename(src / "volcano")
    import_sources([src], root=tmp_path / "root", progress=False, name="Odd")
    odd = load_scene_dataset("Odd", tmp_path / "root")
    small = LabelSpace(("beach", "forest", "river"))
    with pytest.raises(DataError, match=r"\['Beach_Scenes', 'volcano'\] are not classes of this run.*lacks "
                                        r"\['beach', 'forest', 'river'\]"):
        match_classes(odd, small)
    with pytest.raises(DataError, match=r"\['volcano'\] are not classes of this run.*lacks \['forest', 'river'\]"):
        match_classes(odd, LabelSpace(("beach scenes", "forest", "river")))  # Beach_Scenes: readable name


def test_own_split_is_the_fed_rsic_pooled_split_and_seeded(sites):
    cfg = load_run_config(sites.params)
    space = run_label_space(cfg)
    ds = sites.datasets[1]
    split = own_split([ds], [1], space, cfg)
    client = split.clients[0]
    # the pooled test set of any Fed-RSIC partition of this dataset with the same seed and fraction
    other = build_partition(ds.labels, ds.classnames, PartitionConfig(dataset=ds.name, num_clients=3, alpha=0.3),
                            content_hashes=ds.hashes)
    assert client.test_indices == other.test_indices and client.client_id == 1
    assert sorted(client.train_indices + client.test_indices) == list(range(len(ds)))
    assert np.bincount(np.asarray(ds.labels)[client.test_indices]).tolist() == [2, 2]  # round(0.2 * 8) per class
    assert [space.names[i] for i in sorted(set(split.labels.tolist()))] == ["beach", "forest"]
    assert len(client.missing) == 19 and "airplane" in client.missing
    assert own_split([ds], [1], space, cfg).clients[0].test_indices == client.test_indices
    reseeded = run_config({**yaml.safe_load(sites.params.read_text()), "data": {"dataset": "UCMerced", "num_clients": 3,
                                                                                "seed": 5}})
    assert own_split([ds], [1], space, reseeded).clients[0].test_indices != client.test_indices


def test_node_dataset_and_the_client_data_mode_must_fit(sites, tmp_path):
    assert load_node_dataset(sites.roots[0]).name == "SiteA"
    assert load_node_dataset(sites.roots[0], "SiteA").name == "SiteA"
    with pytest.raises(DataError, match="no imported dataset.*fedrs data import PATH --name NAME --root"):
        load_node_dataset(tmp_path)
    with pytest.raises(DataError, match="absolute path"):
        load_node_dataset("relative/root")
    text = dump_yaml(load_run_config(sites.params))
    space = run_label_space(load_run_config(sites.params)).to_json()
    with pytest.raises(FedrsError, match="clients bring their own data, but this SuperNode names none"):
        client_task(text, "", {"partition-id": 0, "num-partitions": 3}, "own", space)
    with pytest.raises(FedrsError, match="holds its own data .*client-data='partition'"):
        client_task(text, "", {"partition-id": 0, "num-partitions": 3, "data-dir": str(sites.roots[0])})
    with pytest.raises(FedrsError, match="has partition-id=3 num-partitions=3 but the run has 3 clients"):
        client_task(text, "", {"partition-id": 3, "num-partitions": 3, "data-dir": str(sites.roots[0])}, "own", space)
    narrow = LabelSpace(("beach", "forest")).to_json()
    with pytest.raises(DataError, match=r"SiteA: class folder\(s\) \['airplane'\] are not classes of this run"):
        client_task(text, "", {"partition-id": 0, "num-partitions": 3, "data-dir": str(sites.roots[0])}, "own", narrow)


def test_app_settings_and_run_config_of_own_data(sites):
    base = {"params-file": str(sites.params), "out-dir": "/runs/x"}
    assert app_settings({**base, "client-data": "own", "classes": str(sites.classes)}).client_data == "own"
    for extra, match in (({"client-data": "mine"}, "client-data must be"),
                         ({"classes": str(sites.classes)}, "apply to client-data='own' only"),
                         ({"client-data": "own", "datasets": "m:f"}, "applies to client-data='partition'"),
                         ({"client-data": "own", "classes": "classes.txt"}, "classes must be an absolute path")):
        with pytest.raises(ConfigError, match=match):
            app_settings({**base, **extra})
    arg = run_config_arg(sites.params, "/runs/x", own_data=OwnData(sites.classes, sites.validation, "Validation"))
    assert (f'client-data="own" classes="{sites.classes}" validation-dir="{sites.validation}" '
            f'validation-dataset="Validation" datasets=""') in arg


@pytest.mark.parametrize("argv, message", [
    (["supernode", "--data", "{empty}"], "holds no imported dataset: import yours first"),
    (["supernode", "--data", "{site}", "--dataset", "Nope"], "unknown dataset 'Nope'"),
    (["supernode", "--dataset", "SiteA"], "--dataset names a dataset in this SuperNode's own data root"),
    (["local", "{params}", "--out", "{out}", "--node-data", "{site}", "{site}"],
     "2 node data folders but the run has data.num_clients=3"),
    (["local", "{params}", "--out", "{out}", "--classes", "{classes}"], "--classes apply to SuperNodes with their own"),
    (["local", "{params}", "--out", "{out}", "--node-data", "{site}", "{empty}", "{out}"], "is not a folder"),
])
def test_fedrs_flower_refuses_bad_own_data_in_one_line(sites, tmp_path, capsys, argv, message):
    """Each refusal is one 'fedrs: error:' line before anything starts (no deployment, no Flower)."""
    from fedrs.cli import main

    (tmp_path / "empty").mkdir()
    names = {"empty": tmp_path / "empty", "site": sites.roots[0], "params": sites.params, "out": tmp_path / "none",
             "classes": sites.classes}
    head = ["flower"] + (["supernode", "--superlink", "127.0.0.1:9", "--insecure", "--partition-id", "0",
                          "--num-partitions", "3"] if argv[0] == "supernode" else [argv[0]])
    assert main(head + [a.format(**names) for a in argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedrs: error: ") and message in err[0], err
    assert not (tmp_path / "none").exists()


# --- FlowerEngine over an in-process grid ----------------------------------------------------------

class OwnDataGrid:
    """A Grid stand-in: SuperNode ``i`` (a Context of its own) holds ``roots[i]``; replies come in
    reverse order, so arrival order differs from partition order."""

    def __init__(self, roots: list[Path], names: list[str]):
        self.nodes = {node: Context(1, node, {"partition-id": i, "num-partitions": len(roots), "data-dir": str(root),
                                              "dataset": name}, RecordDict(), {})
                      for i, (node, root, name) in enumerate(zip(range(500, 600, 11), roots, names))}

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for msg in reversed(list(messages)):
            node = msg.metadata.dst_node_id
            content = respond(msg.metadata.message_type, msg.content, self.nodes[node])
            replies.append(SimpleNamespace(content=content, metadata=SimpleNamespace(src_node_id=node),
                                           has_error=lambda: False))
        return replies


def flower_own_run(sites, out: Path, classes: Path | None = None, validation: bool = False) -> dict:
    """What the ServerApp's run_own_deployment does, over the in-process grid."""
    cfg = load_run_config(sites.params)
    space = run_label_space(cfg, classes)
    backbone, method = build_method(cfg, space)
    valid = validation_data(method, backbone, load_node_dataset(sites.validation), space, cfg) if validation else None
    make_engine = partial(OwnDataFlowerEngine, OwnDataGrid(sites.roots, sites.names), dump_yaml(cfg), space,
                          validation=valid, privacy=cfg.privacy, node_wait=1.0)
    return run_own_data(cfg, out, make_engine, space=space, clients=placeholder_clients(3),
                        pooled_test=torch.zeros(0, dtype=torch.long), split=lambda e: server_split(cfg, space, e.sizes),
                        backbone=backbone, method=method)


@pytest.fixture(scope="module")
def reference(sites):
    out = sites.base / "inprocess"
    return out, run_own_data_inprocess(load_run_config(sites.params), out, sites.datasets)


def test_flower_engine_with_own_data_equals_the_inprocess_engine(sites, reference, tmp_path):
    metrics = flower_own_run(sites, tmp_path / "flower")
    assert_same_run(tmp_path / "flower", metrics, *reference)
    split = json.loads((tmp_path / "flower" / "split.json").read_text())
    assert split["format"] == "fedrs-own-data" and len(split["classnames"]) == 21
    assert [c["test_examples"] for c in split["clients"]] == [4, 4, 4]
    assert metrics["zeroshot"] == {} and not (tmp_path / "flower" / "checkpoint.pt").exists()
    assert set(metrics["uploaded_tensors"]) == {"text_shared"}


def test_classes_file_and_server_validation(sites, tmp_path):
    metrics = flower_own_run(sites, tmp_path / "flower", classes=sites.classes, validation=True)
    rows = read_csv(tmp_path / "flower" / "rounds.csv")
    assert (all(bool(r["validation_acc"]) == bool(r["global_acc"]) for r in rows)
            and metrics["validation_accuracy"] == float(rows[-1]["validation_acc"]))
    assert json.loads((tmp_path / "flower" / "split.json").read_text())["classnames"] == ["airplane", "beach", "forest",
                                                                                         "river"]
    ref = run_own_data_inprocess(load_run_config(sites.params), tmp_path / "inprocess", sites.datasets,
                                 classes_file=sites.classes)
    assert metrics["global_accuracy"] == ref["global_accuracy"]
    assert metrics["personalised_accuracy"] == ref["personalised_accuracy"]


def test_a_train_message_without_the_label_space_is_refused(sites):
    """A SuperNode with its own data cannot be used by a server that partitions one dataset."""
    cfg = load_run_config(sites.params)
    node = Context(1, 9, {"partition-id": 0, "num-partitions": 3, "data-dir": str(sites.roots[0])}, RecordDict(), {})
    content = RecordDict({ARRAYS: to_record({}),
                          CONFIG: ConfigRecord({PARAMS: dump_yaml(cfg), CLIENT_DATA: "partition"})})
    with pytest.raises(FedrsError, match="holds its own data"):
        respond(MessageType.EVALUATE, content, node)
    content[CONFIG] = ConfigRecord({PARAMS: dump_yaml(cfg), CLIENT_DATA: "own",
                                    CLASSES: LabelSpace(("forest", "river")).to_json()})
    with pytest.raises(DataError, match=r"\['airplane', 'beach'\] are not classes of this run"):
        respond(MessageType.EVALUATE, content, node)


# --- a loopback deployment --------------------------------------------------------------------------

def test_loopback_deployment_of_three_sites_with_their_own_data(sites, reference, tmp_path):
    """``fedrs flower local --node-data A B C``: TLS + SuperNode authentication (the default), each
    SuperNode on its own data root, the server's data root empty; the run equals the in-process
    engine on the same three datasets. Prints both wall times."""
    out = tmp_path / "flower"
    started = time.monotonic()
    with open(tmp_path / "flwr-run.log", "w") as log:
        try:
            metrics = run_local(sites.params, out, node_data=sites.roots, extra_env=sites.env, stdout=log, timeout=480)
        except FedrsError as exc:
            logs = "".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                           for p in sorted((out / "flower-logs").glob("*.log")))
            pytest.fail(f"{exc}\n{(tmp_path / 'flwr-run.log').read_text()[-4000:]}\n{logs}")
    loopback_s = time.monotonic() - started
    assert not any(Path(sites.env["FEDRS_DATA"]).iterdir())  # the server never had data
    assert_same_run(out, metrics, *reference)
    started = time.monotonic()
    inproc = run_own_data_inprocess(load_run_config(sites.params), tmp_path / "inprocess", sites.datasets)
    inprocess_s = time.monotonic() - started
    print(f"\n3-client own-data loopback deployment (TLS + node auth, {load_run_config(sites.params).train.rounds} "
          f"rounds, tiny backbone): {loopback_s:.1f} s wall (run {metrics['wall_time_s']:.1f} s: setup "
          f"{metrics['setup_time_s']:.1f} s + rounds {metrics['rounds_time_s']:.1f} s); in-process engine on the "
          f"same data: {inprocess_s:.1f} s wall (run {inproc['wall_time_s']:.1f} s)")
