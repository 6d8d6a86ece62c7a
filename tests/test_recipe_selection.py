"""Choosing the offline backbone's recipe on held-out pretraining images (issue 11).

The held-out slice is seeded, disjoint from training and the same for every candidate; the
"unseen" templates really occur in no pretraining caption; the rule picks the highest selection
score; and an end-to-end selection on the tiny architecture writes its record (real data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from fedrs.backbone.factory import clear_backbone_cache
from fedrs.backbone.templates import DEFAULT_TEMPLATE, UNSEEN_TEMPLATES
from fedrs.config import ConfigError, to_dict
from fedrs.pretrain import PretrainConfig, load_recipe
from fedrs.pretrain.selection import (
    SelectionError,
    candidate_names,
    check_unseen_templates,
    choose_candidate,
    load_candidate,
    select_recipe,
    template_fragments,
)
from fedrs.pretrain.training import split_pretrain_validation


@dataclass
class _Item:
    image_id: str


def test_the_held_out_slice_is_seeded_disjoint_and_independent_of_order():
    items = [_Item(f"img{i:03d}") for i in range(200)]
    train, held = split_pretrain_validation(items, 0.1, seed=0)
    assert len(held) == 20 and len(train) == 180
    assert not {i.image_id for i in train} & {i.image_id for i in held}
    # the same images whatever the input order (every candidate holds out the same slice)
    _, held_rev = split_pretrain_validation(list(reversed(items)), 0.1, seed=0)
    assert {i.image_id for i in held} == {i.image_id for i in held_rev}
    # another seed, another slice; fraction 0 holds nothing out
    _, held_other = split_pretrain_validation(items, 0.1, seed=1)
    assert {i.image_id for i in held} != {i.image_id for i in held_other}
    assert split_pretrain_validation(items, 0.0, seed=0) == (items, [])


def test_a_validation_fraction_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="validation_fraction"):
        load_recipe("fedrs-rsclip-tiny", overrides={"validation_fraction": 0.6})


def test_template_fragments_and_the_unseen_check():
    assert template_fragments("a picture showing {} from high above.") == ["a picture showing", "from high above"]
    assert template_fragments("{} .") == []
    check_unseen_templates(["a picture showing {} from high above."], ["many buildings are near a road ."])
    with pytest.raises(SelectionError, match="from high above"):
        check_unseen_templates(["a picture showing {} from high above."],
                               ["a stadium seen From High Above the city ."])
    # the evaluation template is what label captions contain: it is never "unseen" for them
    with pytest.raises(SelectionError):
        check_unseen_templates([DEFAULT_TEMPLATE], [DEFAULT_TEMPLATE.format("forest")])


def test_the_rule_takes_the_highest_score_and_the_earlier_on_ties():
    rows = [{"candidate": "a", "selection_score": 30.0}, {"candidate": "b", "selection_score": 31.5},
            {"candidate": "c", "selection_score": 31.5}]
    assert choose_candidate(rows)["candidate"] == "b"
    with pytest.raises(SelectionError):
        choose_candidate([])


def test_shipped_candidates_hold_out_one_slice_and_r2_is_the_shipped_recipe():
    names = candidate_names()
    assert {"r1", "r2", "r2-nolabels"} <= set(names)
    configs = [load_candidate(n) for n in names]
    assert {(c.validation_fraction, c.validation_seed) for c in configs} == {(0.1, 0)}
    shipped = to_dict(load_recipe("fedrs-rsclip-s"))
    r2 = {**to_dict(load_candidate("r2")), "validation_fraction": 0.0}
    ignore = {"eval_datasets", "threads"}
    assert {k: v for k, v in r2.items() if k not in ignore} == {k: v for k, v in shipped.items() if k not in ignore}


@pytest.mark.realdata
def test_unseen_templates_occur_in_no_rsicd_training_caption(real_data_root, monkeypatch):
    from fedrs.data import load_caption_set

    monkeypatch.setenv("FEDRS_DATA", str(real_data_root))
    captions = [c for it in load_caption_set("RSICD", split="train").with_images().items for c in it.captions]
    label_captions = [t.format("forest") for t in load_recipe("fedrs-rsclip-s").label_templates]
    check_unseen_templates(UNSEEN_TEMPLATES, captions + label_captions)


@pytest.mark.realdata
def test_a_selection_on_the_tiny_model_trains_scores_and_writes_its_record(real_data_root, tmp_path, monkeypatch):
    from fedrs.pretrain import selection

    monkeypatch.setenv("FEDRS_DATA", str(real_data_root))
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    clear_backbone_cache()
    tiny = dict(model="fedrs-rsclip-tiny", epochs=1, batch_size=32, lr=1e-3, max_images=120, decode_size=36,
                eval_datasets=[], validation_fraction=0.25, validation_seed=0)
    candidates = {"one": PretrainConfig(**tiny, label_templates=[]),
                  "two": PretrainConfig(**tiny, label_templates=["a satellite photo of a {}."], crop_min_area=0.5)}
    monkeypatch.setattr(selection, "load_candidate", lambda name: candidates[name])
    record = select_recipe(["one", "two"], tmp_path / "work", out_dir=tmp_path / "out", progress=False)
    rows = {r["candidate"]: r for r in record["candidates"]}
    assert set(rows) == {"one", "two"} and rows["one"]["val_images"] == 30
    # the held-out images were not trained on: 90 of the 120 images made the training set
    assert json.loads((tmp_path / "work" / "one" / "model_card.json").read_text())["data"]["images"] == 90
    for r in rows.values():
        assert 0 <= r["val_mR"] <= 100 and 0 <= r["val_zeroshot_unseen_templates"] <= 100
        assert r["selection_score"] == pytest.approx((r["val_mR"] + r["val_zeroshot_unseen_templates"]) / 2, abs=0.01)
    assert record["chosen"] == choose_candidate(record["candidates"])["candidate"]
    assert record["shipped_recipe_matches"] is False  # a tiny recipe is not the shipped one
    assert json.loads((tmp_path / "out" / "selection.json").read_text())["chosen"] == record["chosen"]
    assert "Chosen: **" in (tmp_path / "out" / "SELECTION.md").read_text()
    # a second call reuses the trained candidates (no retraining: the checkpoints stay the same files)
    stamp = {n: (tmp_path / "work" / n / "open_clip_model.pt").stat().st_mtime_ns for n in rows}
    again = select_recipe(["one", "two"], tmp_path / "work", progress=False)
    assert again["candidates"] == record["candidates"]
    assert stamp == {n: (tmp_path / "work" / n / "open_clip_model.pt").stat().st_mtime_ns for n in rows}
    # candidates that hold out different slices are not compared
    candidates["two"] = PretrainConfig(**{**tiny, "validation_seed": 1})
    with pytest.raises(SelectionError, match="different images"):
        select_recipe(["one", "two"], tmp_path / "work2", progress=False)


def test_a_model_card_cites_the_selection_only_for_the_chosen_recipe():
    from fedrs.pretrain.selection import card_selection

    row = {"candidate": "r2", "val_mR": 14.4, "val_zeroshot_unseen_templates": 46.8,
           "val_zeroshot_eval_template": 55.9, "selection_score": 30.6}
    record = {"chosen": "r2", "candidates": [row, {**row, "candidate": "r1"}], "rule": "the rule",
              "held_out": {"images": 897}}
    shipped = to_dict(load_recipe("fedrs-rsclip-s"))
    # an older card's recipe lacks the validation keys: read with their defaults, it still matches
    older = {k: v for k, v in shipped.items() if not k.startswith("validation_")}
    cited = card_selection(record, older)
    assert cited["chosen"] == "r2" and cited["val_mR"] == 14.4 and cited["held_out_images"] == 897
    assert card_selection(record, {**shipped, "crop_min_area": 0.5}) is None  # another recipe
    assert card_selection({**record, "chosen": "r1"}, shipped) is None  # r1 is not the shipped recipe
