"""The retrieval comparisons that bench_retrieval.py and notebook 04 share (random tiny backbone)."""

import pytest
import torch
from test_retrieval_variants import tiny_set

from fedrs.backbone.factory import create_backbone
from fedrs.retrieval import AdapterConfig, RetrievalConfig, RetrievalTrainConfig, evaluate
from fedrs.retrieval.compare import COLUMN_LABELS, compare_federated, compare_variants, comparison_table

RECALLS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def tiny_cfg() -> RetrievalConfig:
    return RetrievalConfig(dataset="tiny", adapter=AdapterConfig(bottleneck=16, shared_dim=8),
                           train=RetrievalTrainConfig(epochs=1, batch_size=4))


def test_compare_variants_scores_each_variant_and_keeps_only_the_asked_models(tiny):
    train, test = tiny_set(tiny, n_images=8), tiny_set(tiny, n_images=4)
    rows, models = compare_variants(tiny, train, test, tiny_cfg(), ["zero-shot", "mrs-adapter-hmmc"], max_steps=1,
                                    keep=["mrs-adapter-hmmc"])
    assert [r["method"] for r in rows] == ["zero-shot", "mrs-adapter-hmmc"]
    zero, adapter = rows
    assert zero["trainable_params"] == 0 and zero["train_steps"] == 0
    assert adapter["trainable_params"] > 0 and adapter["train_steps"] == 1
    assert list(models) == ["mrs-adapter-hmmc"]
    # the row scores the returned model, ties against it; optimistic ties can only help
    assert {k: adapter[k] for k in RECALLS} == pytest.approx(evaluate(models["mrs-adapter-hmmc"], test).as_row())
    assert adapter["mR_optimistic"] >= adapter["mR"]
    assert adapter["backbone"] == tiny.label
    table = comparison_table(rows)
    assert list(table.index) == ["zero-shot", "mrs-adapter-hmmc"] and "backbone" not in table
    assert COLUMN_LABELS["trainable_params"] in table and COLUMN_LABELS["mR_optimistic"] in table


def test_compare_federated_rows_centralised_shared_and_private(tiny):
    train, test = tiny_set(tiny, n_images=8), tiny_set(tiny, n_images=4)
    rows = compare_federated(tiny, train, test, tiny_cfg(), clients=2, rounds=1, lr=0.5, private_ups=True)
    assert [r["method"] for r in rows] == [
        "mrs-adapter-hmmc centralised (engine, 1 client)",
        "mrs-adapter-hmmc federated (2 clients, all shared)",
        "mrs-adapter-hmmc federated (2 clients, private ups)",
        "mrs-adapter-hmmc federated (2 clients, private ups), personalised (client mean)",
    ]
    central, shared, private, personalised = rows
    # one client uploads everything it trains; private up-projections stay home
    assert central["upload_values_per_client_round"] == central["trainable_params"]
    assert shared["upload_values_per_client_round"] == shared["trainable_params"]
    assert private["upload_values_per_client_round"] < private["trainable_params"]
    assert all(0 <= r["mR"] <= 100 for r in rows)


def test_compare_federated_without_clients_is_the_centralised_row_only(tiny):
    train, test = tiny_set(tiny, n_images=6), tiny_set(tiny, n_images=4)
    rows = compare_federated(tiny, train, test, tiny_cfg(), clients=1, rounds=1, lr=0.5, private_ups=True)
    assert [r["method"] for r in rows] == ["mrs-adapter-hmmc centralised (engine, 1 client)"]
