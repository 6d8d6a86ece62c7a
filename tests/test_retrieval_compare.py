"""The retrieval comparisons that bench_retrieval.py, notebook 04 and the PETL table share (random
tiny backbone): validation held out of training, validated learning rates, every tie convention,
protocol labels, the InfoNCE row beside the headline, and the cross-modal federated rows."""

from pathlib import Path

import pytest
import torch
from test_retrieval_variants import tiny_set

import fedrs.retrieval.compare as compare
from fedrs.backbone.factory import create_backbone
from fedrs.evaluate.retrieval import TIES, tie_row
from fedrs.retrieval import AdapterConfig, RetrievalConfig, RetrievalTrainConfig, evaluate_by_ties
from fedrs.retrieval.compare import (
    COLUMN_LABELS,
    HEADLINE,
    PETL_ROWS,
    CompareError,
    compare_federated,
    compare_variants,
    comparison_table,
    row_lr,
)
from fedrs.retrieval.config import (
    CENTRALISED_SGD_LR,
    DEFAULT_LR,
    FEDERATED_SGD_LR,
    INFONCE_HMMC_LR,
    LR_SOURCE,
)

REPO = Path(__file__).resolve().parent.parent
RECALLS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]
LABELS = ["backbone", "dataset", "test_set", "train_set", "validation", "seed"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def tiny_cfg(seed: int = 0) -> RetrievalConfig:
    cfg = RetrievalConfig(dataset="tiny", adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                          train=RetrievalTrainConfig(epochs=1, batch_size=4, seed=seed))
    cfg.validation.seed = seed
    return cfg


def spy_training(monkeypatch) -> list[dict]:
    """Record the image ids each train_epochs call trains on and validates on."""
    calls, real = [], compare.train_epochs

    def spy(model, loss, data, **kw):
        calls.append({"fit": list(data.image_ids), "val": list(kw["val"].image_ids) if kw.get("val") else [],
                      "lr": kw["lr"], "form": loss.form})
        return real(model, loss, data, **kw)

    monkeypatch.setattr(compare, "train_epochs", spy)
    return calls


def test_rows_hold_out_validation_score_every_tie_convention_and_name_their_protocol(tiny, monkeypatch):
    train, test = tiny_set(tiny, n_images=10), tiny_set(tiny, n_images=4)
    test.image_ids = [f"test{i}" for i in range(len(test))]
    calls = spy_training(monkeypatch)
    rows, models = compare_variants(tiny, train, test, tiny_cfg(), ["zero-shot", HEADLINE], max_steps=1,
                                    keep=[HEADLINE])
    assert [r["method"] for r in rows] == ["zero-shot", HEADLINE]
    zero, head = rows
    assert zero["trainable_params"] == 0 and zero["train_steps"] == 0
    assert head["trainable_params"] > 0 and head["train_steps"] == 1
    assert list(models) == [HEADLINE]
    # the validation split (20% of the 10 training images) is held out: never trained on, never test
    assert calls[0]["fit"] == calls[1]["fit"] and calls[0]["val"] == calls[1]["val"]  # one split for every row
    call = calls[1]
    assert len(call["val"]) == 2 and len(call["fit"]) == 8 and not set(call["val"]) & set(call["fit"])
    assert set(call["fit"]) | set(call["val"]) == set(train.image_ids)
    assert not set(call["val"]) & set(test.image_ids)
    assert 0 <= head["final_val_mR"] <= 100 and head["val_mR_curve"]
    assert 0 <= zero["final_val_mR"] <= 100  # the untrained model's validation score, for reference
    # the row scores the returned model's final epoch under every tie convention, pessimistic unsuffixed
    expected = tie_row(evaluate_by_ties(models[HEADLINE], test), primary="pessimistic")
    assert {k: head[k] for k in expected} == pytest.approx(expected)
    for r in rows:
        assert r["mR"] <= r["mR_argsort"] <= r["mR_optimistic"]
        assert {f"{k}_{t}" for k in RECALLS for t in TIES if t != "pessimistic"} <= set(r)
        assert r["backbone"] == tiny.label and r["test_set"] == "tiny: 4 images" and r["seed"] == 0
        assert r["validation"] == "val (20% of the train+val images, seed 0): 2 of 10"
    table = comparison_table(rows)
    assert list(table.index) == ["zero-shot", HEADLINE]
    assert {COLUMN_LABELS[k] for k in ("backbone", "test_set", "seed", "mR_argsort", "mR_optimistic")} <= set(table)


def test_the_seed_moves_the_validation_split_and_the_initialisation(tiny, monkeypatch):
    train, test = tiny_set(tiny, n_images=10), tiny_set(tiny, n_images=4)
    calls = spy_training(monkeypatch)
    compare_variants(tiny, train, test, tiny_cfg(0), [HEADLINE], max_steps=1)
    compare_variants(tiny, train, test, tiny_cfg(1), [HEADLINE], max_steps=1)
    assert calls[0]["val"] != calls[1]["val"]


def test_learning_rates_are_the_librarys_constants_and_say_where_they_came_from(tiny, monkeypatch):
    cfg = tiny_cfg()
    assert row_lr(cfg, PETL_ROWS[HEADLINE]) == (DEFAULT_LR[HEADLINE], LR_SOURCE[HEADLINE])
    assert LR_SOURCE[HEADLINE].startswith("chosen on validation")
    # every trained row's rate was chosen on validation, and its source names the sweep's folder
    for name, row in PETL_ROWS.items():
        if row.variant != "zero-shot":
            lr, source = row_lr(cfg, row)
            assert source.startswith("chosen on validation") and "results/retrieval/lr_sweep/" in source, name
            assert (REPO / source.split(": ")[-1].rstrip(")") / "lr_sweep.json").is_file(), source
    assert row_lr(cfg, PETL_ROWS["mrs-adapter-hmmc-infonce"])[0] == INFONCE_HMMC_LR
    assert row_lr(cfg, PETL_ROWS["zero-shot"]) == (0.0, "no training")
    fixed = RetrievalConfig(train=RetrievalTrainConfig(lr=0.5))
    assert row_lr(fixed, PETL_ROWS[HEADLINE]) == (0.5, "the configuration's train.lr")
    # the InfoNCE row trains the same model with the InfoNCE form of HMMC, at its own rate
    calls = spy_training(monkeypatch)
    train, test = tiny_set(tiny, n_images=8), tiny_set(tiny, n_images=4)
    rows, _ = compare_variants(tiny, train, test, cfg, [HEADLINE, "mrs-adapter-hmmc-infonce"], max_steps=1)
    assert [(c["form"], c["lr"]) for c in calls] == [("hinge", DEFAULT_LR[HEADLINE]), ("infonce", INFONCE_HMMC_LR)]
    assert [r["loss_form"] for r in rows] == ["hinge", "infonce"]
    assert rows[0]["trainable_params"] == rows[1]["trainable_params"]
    with pytest.raises(CompareError, match="unknown PETL row"):
        compare_variants(tiny, train, test, cfg, ["mrs-adapter-hmmc-svm"])


def test_compare_federated_rows_centralised_whole_adapter_and_cross_modal(tiny):
    train, test = tiny_set(tiny, n_images=10), tiny_set(tiny, n_images=4)
    rows = compare_federated(tiny, train, test, tiny_cfg(), clients=2, rounds=1, private_ups=True)
    assert [r["method"] for r in rows] == [
        "mrs-adapter-hmmc centralised (engine, 1 client)",
        "mrs-adapter-hmmc federated (2 clients, iid, whole adapter averaged)",
        "mrs-adapter-hmmc federated (2 clients, iid, private ups), server model (private parts at their "
        "initial values)",
        "mrs-adapter-hmmc federated (2 clients, iid, private ups), personalised (client mean)",
        "mrs-adapter-hmmc federated (2 clients, iid, cross-modal part averaged), server model (private parts "
        "at their initial values)",
        "mrs-adapter-hmmc federated (2 clients, iid, cross-modal part averaged), personalised (client mean)",
    ]
    central, whole, private, _, cross, cross_personal = rows
    # one client uploads everything it trains; private up-projections stay home; cross-modal uploads
    # only the shared up-projection (8 x 16 + 8 values with this adapter)
    assert central["upload_values_per_client_round"] == central["trainable_params"]
    assert whole["upload_values_per_client_round"] == whole["trainable_params"]
    assert private["upload_values_per_client_round"] < private["trainable_params"]
    assert cross["upload_values_per_client_round"] == 16 * 8 + 8 and cross["federate"] == "cross-modal"
    # the one-client reference trains at its own validated rate, the clients at theirs
    assert central["lr"] == CENTRALISED_SGD_LR and "1 client" in central["lr_source"]
    for r in rows:
        assert r["lr"] == (CENTRALISED_SGD_LR if r is central else FEDERATED_SGD_LR)
        assert r["lr_source"].startswith("chosen on validation")
        assert r["mR"] <= r["mR_argsort"] <= r["mR_optimistic"] and 0 <= r["mR"] <= 100
        assert all(k in r for k in LABELS) and r["validation"].endswith("2 of 10")
        assert 0 <= r["final_val_mR"] <= 100  # validation scored every round, the personalised rows per client
    assert cross_personal["upload_values_per_client_round"] == cross["upload_values_per_client_round"]


def test_compare_federated_without_clients_is_the_centralised_row_only(tiny):
    train, test = tiny_set(tiny, n_images=6), tiny_set(tiny, n_images=4)
    rows = compare_federated(tiny, train, test, tiny_cfg(), clients=1, rounds=1, lr=0.5, centralised_lr=0.2)
    assert [r["method"] for r in rows] == ["mrs-adapter-hmmc centralised (engine, 1 client)"]
    assert rows[0]["lr"] == 0.2 and rows[0]["lr_source"] == "given by the caller, not chosen on validation"
