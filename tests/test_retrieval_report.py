"""The federated-retrieval table from run folders (``fedrs report`` on a retrieval folder): per
setting the mean +- std over seeds and the paired difference to the centralised run of each seed,
refusals of folders that cannot make one table, and the report command's dispatch."""

import json
import math

import pytest
import yaml
from scipy import stats

from fedrs.cli import main
from fedrs.retrieval.report import (
    RetrievalReportError,
    federated_summary,
    read_federated_runs,
    write_federated_table,
)

BACKBONE = "fedrs-rsclip-s/offline-57543234"


def write_run(folder, name, *, seed, clients, mr, scheme="iid", alpha=0.5, federate="all", personalised=None,
              backbone=BACKBONE, rounds=10, argsort=None):
    """A retrieval run folder as ``fedrs run`` writes it (the keys the table reads)."""
    run = folder / name
    run.mkdir(parents=True)
    metrics = {
        "name": name, "method": "pe-rsitr", "variant": "mrs-adapter-hmmc", "backbone": backbone,
        "dataset": "UCM-Captions", "partition": {"dataset": "UCM-Captions", "num_clients": clients, "scheme": scheme,
                                                 "alpha": alpha, "seed": seed},
        "seed": seed, "rounds": rounds, "num_clients": clients, "test_set": "UCM-Captions test: 210 images",
        "train_images": 1512, "global": {"mR": mr, "mR_argsort": mr + 1.0 if argsort is None else argsort},
        "personalised": {} if personalised is None else {"mR": personalised},
        "selection": {"final_val_mR": mr - 1.0}, "loss": {"form": "hinge", "margin": 0.2},
        "federate": federate, "upload_values_per_client_round": 28992 if federate == "all" else 4160,
        "private_prefixes": [], "wall_time_s": 100.0,
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    params = {"data": {"dataset": "UCM-Captions", "num_clients": clients},
              "method": {"name": "pe-rsitr", "federate": federate},
              "train": {"rounds": rounds, "local_epochs": 1, "lr": 0.03}}
    (run / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return run


CENTRAL = {0: 20.0, 1: 22.0, 2: 21.0}
WHOLE = {0: 18.0, 1: 21.5, 2: 19.0}          # differences -2.0, -0.5, -2.0
CROSS = {0: 10.0, 1: 11.0, 2: 12.0}
CROSS_PERSONAL = {0: 19.0, 1: 23.0, 2: 21.5}  # differences -1.0, +1.0, +0.5


@pytest.fixture
def grid(tmp_path):
    for s in (0, 1, 2):
        write_run(tmp_path, f"centralised__s{s}", seed=s, clients=1, mr=CENTRAL[s])
        write_run(tmp_path, f"whole__dir0.1__c5__s{s}", seed=s, clients=5, mr=WHOLE[s], scheme="dirichlet", alpha=0.1)
        write_run(tmp_path, f"crossmodal__iid__c10__s{s}", seed=s, clients=10, mr=CROSS[s], federate="cross-modal",
                  personalised=CROSS_PERSONAL[s])
    return tmp_path


def t_interval(d):
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def test_each_setting_is_paired_with_the_centralised_run_of_its_seed(grid):
    summary = federated_summary(read_federated_runs(grid))
    # centralised first, then by split (IID before Dirichlet), clients, what is averaged
    assert [(r["split"], r["clients"], r["federate"]) for r in summary] == [
        ("pooled", 1, "all"), ("IID", 10, "cross-modal"), ("Dirichlet(0.1)", 5, "all")]
    central, cross, whole = summary
    assert central["server_mR_mean"] == pytest.approx(21.0) and central["server_mR_std"] == pytest.approx(1.0)
    assert central["d_server"] == pytest.approx(0.0)
    mean, low, high = t_interval([WHOLE[s] - CENTRAL[s] for s in (0, 1, 2)])
    assert (whole["d_server"], whole["d_server_low"], whole["d_server_high"]) == pytest.approx((mean, low, high))
    assert whole["d_server_pairs"] == 3 and whole["seeds"] == "0-2"
    assert math.isnan(whole["personalised_mR_mean"]) and whole["d_personalised_pairs"] == 0
    mean, low, high = t_interval([CROSS_PERSONAL[s] - CENTRAL[s] for s in (0, 1, 2)])
    assert cross["d_personalised"] == pytest.approx(mean) and cross["d_personalised_low"] == pytest.approx(low)
    assert low < 0 < high and not cross["d_personalised_distinguishable"]
    assert cross["d_server_distinguishable"]  # -10 points every seed
    assert cross["uploaded"] == 4160 and whole["uploaded"] == 28992


def test_the_markdown_table_labels_backbone_protocol_and_verdicts(grid):
    csv, md = write_federated_table(grid)
    text = md.read_text(encoding="utf-8")
    assert md == grid / "tables" / "federated.md" and csv.is_file()
    assert BACKBONE in text.splitlines()[0] and "10 rounds x 1 local epoch" in text and "seeds 0-2" in text
    assert "UCM-Captions test: 210 images" in text
    rows = {line.split(" | ")[0].strip("| *"): line for line in text.splitlines() if line.startswith("| ")}
    assert "reference" in rows["centralised (1 client, pooled data)"]
    assert all(" | 0.03 | " in line for line in rows.values() if "±" in line)  # each setting's client lr
    cross = rows["IID, 10 clients, cross-modal part only averaged"]
    assert "11.00 ± 1.00" in cross and "-10.00 [" in cross and "n.d." in cross  # the personalised Δ holds 0
    # regenerating from the same folders gives the same bytes
    before = text
    write_federated_table(grid)
    assert md.read_text(encoding="utf-8") == before


def test_folders_that_cannot_make_one_table_are_refused(tmp_path):
    write_run(tmp_path / "a", "fed__s0", seed=0, clients=5, mr=10.0)
    with pytest.raises(RetrievalReportError, match="no centralised run"):
        federated_summary(read_federated_runs(tmp_path / "a"))
    write_run(tmp_path / "b", "centralised__s0", seed=0, clients=1, mr=10.0)
    write_run(tmp_path / "b", "fed__s0", seed=0, clients=5, mr=10.0, backbone="ViT-B-32/openai")
    with pytest.raises(RetrievalReportError, match="mix backbones"):
        federated_summary(read_federated_runs(tmp_path / "b"))
    write_run(tmp_path / "c", "centralised__s0", seed=0, clients=1, mr=10.0)
    write_run(tmp_path / "c", "centralised_again__s0", seed=0, clients=1, mr=11.0)
    with pytest.raises(RetrievalReportError, match="same setting and seed"):
        federated_summary(read_federated_runs(tmp_path / "c"))
    write_run(tmp_path / "d", "centralised__s0", seed=0, clients=1, mr=float("nan"))
    with pytest.raises(RetrievalReportError, match=r"centralised__s0/metrics.json: not valid JSON \(NaN"):
        read_federated_runs(tmp_path / "d")  # a bare NaN is no JSON: refused as it is read
    write_run(tmp_path / "e", "centralised__s0", seed=0, clients=1, mr=10.0)
    metrics = tmp_path / "e" / "centralised__s0" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"mR": 10.0', '"mR": null'))
    with pytest.raises(RetrievalReportError, match="not a finite number"):
        read_federated_runs(tmp_path / "e")


def test_fedrs_report_writes_the_retrieval_table_of_a_retrieval_folder(grid, capsys):
    assert main(["report", str(grid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Federated retrieval on UCM-Captions") and (grid / "tables" / "federated.md").is_file()
    assert not (grid / "tables" / "methods.md").exists()  # not mistaken for a study folder


def test_fedrs_report_refuses_a_folder_mixing_retrieval_and_classification_runs(grid, capsys):
    other = grid / "classification_run"
    other.mkdir()
    (other / "metrics.json").write_text(json.dumps({"method": "fedrsclip"}), encoding="utf-8")
    assert main(["report", str(grid)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error:") and "folder of its own" in err and "Traceback" not in err
    assert not (grid / "tables").exists()  # nothing half-written


def test_the_committed_grid_is_what_its_generator_writes():
    """params/studies/retrieval/federated/ is generated: every setting and seed, each seed with its
    centralised run at the centralised rate, and nothing edited by hand."""
    import importlib.util
    from pathlib import Path

    from fedrs.retrieval.config import CENTRALISED_SGD_LR, FEDERATED_SGD_LR

    path = Path(__file__).resolve().parent.parent / "params" / "retrieval" / "make_federated.py"
    spec = importlib.util.spec_from_file_location("make_federated", path)
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert make.main(["--check"]) == 0  # the committed files equal the generator's, none stale
    files = make.generate()
    assert len(files) == 3 * (1 + 2 * 3 * 2)  # seeds x (centralised + aggregation x split x clients)
    for p, text in files.items():
        cfg = yaml.safe_load(text)
        seed = int(p.stem.rsplit("__s", 1)[1])
        assert cfg["train"]["seed"] == cfg["data"]["seed"] == cfg["method"]["validation"]["seed"] == seed
        central = p.stem.startswith("centralised")
        assert cfg["data"]["num_clients"] == 1 if central else cfg["data"]["num_clients"] in (5, 10)
        assert cfg["train"]["lr"] == (CENTRALISED_SGD_LR if central else FEDERATED_SGD_LR)
        assert cfg["method"]["federate"] == ("cross-modal" if p.stem.startswith("crossmodal") else "all")
