"""Checkpoint registry: every registered architecture has the registered activation, each project's
file layout loads through create_backbone with its recipe, and unknown files load strictly.

No weights are downloaded: files are synthetic state dicts of the right architecture, saved the way
each project saves theirs. ViT-L-14 / ViT-H-14 are checked through open_clip's config dicts only
(instantiating them takes long on a small CPU); RN50 and ViT-B-32 variants are built.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from fedrs.backbone import checkpoints
from fedrs.backbone.checkpoints import (
    CHECKPOINTS,
    GELU,
    ITRA_TRAINING,
    OPEN_CLIP_TRAINING,
    QUICK_GELU,
    TEMPLATE_SETS,
    entry_for_hub_tag,
    format_figure,
    format_registry,
    get_checkpoint,
    identify_checkpoint,
    published_beside,
    published_figures,
    registry_rows,
)
from fedrs.backbone.factory import clear_backbone_cache, create_backbone, hub_tag_architecture, read_checkpoint
from fedrs.errors import BackboneError

TINY = "fedrs-rsclip-tiny"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEDRS_OFFLINE", "1")
    clear_backbone_cache()
    yield
    clear_backbone_cache()


def _random_state_dict(model_name: str, seed: int) -> dict[str, torch.Tensor]:
    """Weights unlike create_backbone's own seed-0 initialisation, so a load is visible."""
    torch.manual_seed(seed)
    return open_clip.create_model(model_name).state_dict()


def _activations(model: torch.nn.Module) -> set[type]:
    """Types of the activation layers inside every transformer MLP (text and ViT towers)."""
    return {type(m.mlp.gelu) for m in model.modules() if hasattr(m, "mlp") and hasattr(m.mlp, "gelu")}


def _expected_activation(entry_activation: str) -> type:
    return QuickGELU if entry_activation == QUICK_GELU else torch.nn.GELU


# --- the registry's recipes agree with open_clip ------------------------------------------------

@pytest.mark.parametrize("entry", CHECKPOINTS, ids=lambda e: e.key)
def test_registered_architecture_config_has_the_registered_activation(entry):
    cfg = open_clip.get_model_config(entry.architecture)
    assert cfg is not None, f"{entry.architecture} is not an open_clip model"
    assert bool(cfg.get("quick_gelu", False)) == (entry.activation == QUICK_GELU)
    if entry.hub_tag:
        assert entry.hub_tag in open_clip.list_pretrained_tags_by_model(entry.architecture)
        tag_cfg = open_clip.get_pretrained_cfg(entry.architecture, entry.hub_tag)
        assert bool(tag_cfg.get("quick_gelu", False)) == (entry.activation == QUICK_GELU)
        assert entry_for_hub_tag(entry.base_architecture, entry.hub_tag) is entry


@pytest.mark.parametrize("architecture", sorted({e.architecture for e in CHECKPOINTS
                                                 if e.base_architecture in ("RN50", "ViT-B-32")}))
def test_small_registered_architectures_build_without_weights_with_the_registered_activation(architecture):
    activations = {e.activation for e in CHECKPOINTS if e.architecture == architecture}
    assert len(activations) == 1
    model = open_clip.create_model(architecture, pretrained=None)
    assert _activations(model) == {_expected_activation(activations.pop())}


def test_remoteclip_geo_and_sky_recipes_differ_where_their_training_did():
    # RemoteCLIP and GeoRSCLIP ViT-B/32 start from OpenAI (QuickGELU); SkyCLIP ViT-B/32 from
    # laion2b_e16 and GeoRSCLIP ViT-H/14 from laion2b_s32b_b79k (GELU); SkyCLIP ViT-L/14 from OpenAI
    assert get_checkpoint("remoteclip-vit-b-32").architecture == "ViT-B-32-quickgelu"
    assert get_checkpoint("georsclip-vit-b-32").activation == QUICK_GELU
    assert get_checkpoint("skyclip-vit-b-32-top50pct").architecture == "ViT-B-32"
    assert get_checkpoint("georsclip-vit-h-14").activation == GELU
    assert get_checkpoint("skyclip-vit-l-14-top30pct").architecture == "ViT-L-14-quickgelu"
    assert get_checkpoint("laion2b-e16-vit-b-32").activation == GELU
    assert get_checkpoint("openai-vit-l-14").activation == QUICK_GELU


def test_files_are_recognised_by_name_folder_or_sha256():
    assert identify_checkpoint("/w/RemoteCLIP-ViT-B-32.pt").key == "remoteclip-vit-b-32"
    assert identify_checkpoint("ckpt/RS5M_ViT-H-14.pt").key == "georsclip-vit-h-14"
    assert identify_checkpoint("/x/SkyCLIP_ViT_L14_top30pct/epoch_20.pt").key == "skyclip-vit-l-14-top30pct"
    assert identify_checkpoint("/x/epoch_20.pt") is None  # a generic name outside its published folder
    assert identify_checkpoint("/x/my-copy.pt") is None
    openai_b32 = get_checkpoint("openai-vit-b-32")
    assert identify_checkpoint("/x/ViT-B-32.pt", openai_b32.sha256[0]) is openai_b32
    assert identify_checkpoint("/x/ViT-B-32.pt", "0" * 64) is None


def test_hub_tags_build_the_activation_they_were_trained_with():
    # open_clip 3 only warns when 'openai' weights are built under a GELU config (issue #771)
    assert hub_tag_architecture("ViT-B-32", "openai") == "ViT-B-32-quickgelu"
    assert hub_tag_architecture("RN50", "openai") == "RN50-quickgelu"
    assert hub_tag_architecture("ViT-B-32", "laion400m_e32") == "ViT-B-32-quickgelu"
    assert hub_tag_architecture("ViT-B-32", "laion2b_s34b_b79k") == "ViT-B-32"
    assert hub_tag_architecture("ViT-B-32-quickgelu", "openai") == "ViT-B-32-quickgelu"
    assert hub_tag_architecture("ViT-H-14", "laion2b_s32b_b79k") == "ViT-H-14"


# --- each project's files, saved the way the project saves them, through create_backbone ----------

@pytest.fixture(scope="module")
def vit_b_32_weights():
    """One synthetic ViT-B-32 state dict (GELU and QuickGELU variants share every key and shape)."""
    return _random_state_dict("ViT-B-32", seed=1)


def _assert_loaded(backbone, state_dict, keys=("text_projection", "visual.proj", "positional_embedding")):
    loaded = backbone.model.state_dict()
    for k in keys:
        assert torch.equal(loaded[k], state_dict[k]), k


def test_remoteclip_file_asked_as_plain_vit_b_32_is_built_with_quickgelu(tmp_path, vit_b_32_weights):
    # RemoteCLIP's README builds create_model_and_transforms('ViT-B-32') (GELU) and loads the plain
    # state dict; the weights were trained under QuickGELU, so the recipe builds ViT-B-32-quickgelu
    path = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    torch.save(vit_b_32_weights, path)
    bb = create_backbone("ViT-B-32", pretrained=str(path))
    assert bb.model_name == "ViT-B-32-quickgelu"
    assert _activations(bb.model) == {QuickGELU}
    assert bb.checkpoint_entry == "remoteclip-vit-b-32"
    assert bb.sha256_verified is False  # synthetic weights, not the published file
    assert bb.label == "ViT-B-32-quickgelu/RemoteCLIP-ViT-B-32"
    _assert_loaded(bb, vit_b_32_weights)


def test_skyclip_training_checkpoint_asked_as_quickgelu_is_built_with_gelu(tmp_path, vit_b_32_weights):
    # SkyCLIP ships open_clip training checkpoints: {'epoch', 'name', 'state_dict': {'module.*'}, ...}
    path = tmp_path / "SkyCLIP_ViT_B32_top50pct" / "epoch_20.pt"
    path.parent.mkdir()
    torch.save({"epoch": 20, "name": "SkyCLIP_ViT_B32_top50pct",
                "state_dict": {f"module.{k}": v for k, v in vit_b_32_weights.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-9}]}}, path)
    bb = create_backbone("ViT-B-32-quickgelu", pretrained=str(path))
    assert bb.model_name == "ViT-B-32"
    assert _activations(bb.model) == {torch.nn.GELU}
    assert bb.checkpoint_entry == "skyclip-vit-b-32-top50pct"
    assert bb.sha256_verified is None  # no published checksum
    assert bb.label == "ViT-B-32/skyclip-vit-b-32-top50pct"
    _assert_loaded(bb, vit_b_32_weights)


def test_georsclip_published_file_is_a_plain_state_dict_built_with_quickgelu(tmp_path, vit_b_32_weights):
    path = tmp_path / "RS5M_ViT-B-32.pt"
    torch.save(vit_b_32_weights, path)
    bb = create_backbone("ViT-B-32", pretrained=str(path))
    assert (bb.model_name, bb.checkpoint_entry) == ("ViT-B-32-quickgelu", "georsclip-vit-b-32")
    assert _activations(bb.model) == {QuickGELU}
    _assert_loaded(bb, vit_b_32_weights)


def test_registered_file_under_another_architecture_names_the_right_model(tmp_path):
    path = tmp_path / "RemoteCLIP-ViT-L-14.pt"
    torch.save({"junk": torch.zeros(1)}, path)
    with pytest.raises(BackboneError, match="pass model 'ViT-L-14'"):
        create_backbone("ViT-B-32", pretrained=str(path))


# --- layouts and strict loading (tiny architecture) ------------------------------------------------

def test_itra_training_layout_is_renamed_and_loads_strictly(tmp_path):
    # RemoteCLIP's and GeoRSCLIP's trainer (ITRA) saves text_backbone.* / image_backbone.* under
    # DDP's module. prefix, with logit_scale at the top (RS5M inference/convert_weight.py)
    weights = _random_state_dict(TINY, seed=3)
    itra = {}
    for k, v in weights.items():
        if k.startswith("visual."):
            itra[f"module.image_backbone.{k[len('visual.'):]}"] = v
        elif k == "logit_scale":
            itra["module.logit_scale"] = v
        else:
            itra[f"module.text_backbone.{k}"] = v
    path = tmp_path / "epoch_5.pt"
    torch.save({"epoch": 5, "state_dict": itra}, path)
    state_dict, layout = read_checkpoint(path)
    assert layout is ITRA_TRAINING
    assert set(state_dict) == set(weights)
    bb = create_backbone(TINY, pretrained=str(path))
    assert bb.checkpoint_entry is None
    _assert_loaded(bb, weights, keys=tuple(weights))


def test_open_clip_training_layout_is_detected(tmp_path):
    weights = _random_state_dict(TINY, seed=4)
    path = tmp_path / "epoch_1.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 1}, path)
    state_dict, layout = read_checkpoint(path)
    assert layout is OPEN_CLIP_TRAINING and set(state_dict) == set(weights)


def test_torchscript_archive_like_openai_files_is_read(tmp_path):
    path = tmp_path / "tiny-jit.pt"
    open_clip.create_model(TINY, jit=True).save(str(path))
    bb = create_backbone(TINY, pretrained=str(path))
    assert bb.model.logit_scale.shape == ()


def test_unknown_file_missing_weights_is_refused_naming_keys_and_the_fix(tmp_path):
    weights = _random_state_dict(TINY, seed=5)
    del weights["text_projection"]
    path = tmp_path / "partial.pt"
    torch.save(weights, path)
    with pytest.raises(BackboneError) as info:
        create_backbone(TINY, pretrained=str(path))
    msg = str(info.value)
    assert "text_projection" in msg and "strict=False" in msg and "backbone.strict: false" in msg


def test_unknown_file_with_extra_weights_is_refused(tmp_path):
    weights = _random_state_dict(TINY, seed=6)
    weights["prompt_learner.ctx"] = torch.zeros(4, 64)
    path = tmp_path / "extra.pt"
    torch.save(weights, path)
    with pytest.raises(BackboneError, match=r"not in the model \(prompt_learner.ctx\)"):
        create_backbone(TINY, pretrained=str(path))


def test_strict_false_loads_what_matches_and_says_what_did_not(tmp_path, caplog):
    weights = _random_state_dict(TINY, seed=7)
    del weights["text_projection"]
    path = tmp_path / "partial.pt"
    torch.save(weights, path)
    with caplog.at_level(logging.WARNING, logger="fedrs.backbone.factory"):
        bb = create_backbone(TINY, pretrained=str(path), strict=False)
    assert "text_projection" in caplog.text and "strict=False" in caplog.text
    _assert_loaded(bb, weights, keys=("positional_embedding", "visual.proj"))
    # the strict and the lenient load are different backbones, never served from one cache slot
    with pytest.raises(BackboneError, match="loads only partially"):
        create_backbone(TINY, pretrained=str(path))


def _test_entry(**changes) -> checkpoints.CheckpointEntry:
    base = checkpoints.CheckpointEntry(
        key="test-tiny", family="Test", title="a registered tiny CLIP", architecture=TINY,
        activation=GELU, activation_source="test", layout=checkpoints.OPEN_CLIP_STATE_DICT, url="-",
    )
    return dataclasses.replace(base, **changes)


def test_keys_a_registered_file_may_miss_are_allowed(tmp_path, monkeypatch):
    weights = _random_state_dict(TINY, seed=8)
    del weights["logit_scale"]
    path = tmp_path / "tiny-published.pt"
    torch.save(weights, path)
    with pytest.raises(BackboneError, match="logit_scale"):
        create_backbone(TINY, pretrained=str(path))
    monkeypatch.setattr(checkpoints, "CHECKPOINTS",
                        (_test_entry(file_names=("tiny-published.pt",), may_miss=("logit_*",)),))
    bb = create_backbone(TINY, pretrained=str(path))
    assert bb.checkpoint_entry == "test-tiny"


def test_renamed_published_file_is_recognised_by_sha256(tmp_path, monkeypatch):
    from fedrs.backbone.factory import file_fingerprint

    path = tmp_path / "renamed.pt"
    torch.save(_random_state_dict(TINY, seed=9), path)
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", (_test_entry(sha256=(file_fingerprint(path),)),))
    bb = create_backbone(TINY, pretrained=str(path))
    assert (bb.checkpoint_entry, bb.sha256_verified) == ("test-tiny", True)
    assert bb.label == f"{TINY}/test-tiny"


def test_file_with_pickled_objects_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "with-args.pt"
    torch.save({"state_dict": _random_state_dict(TINY, seed=10), "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(BackboneError, match="pickled Python objects"):
        create_backbone(TINY, pretrained=str(path))


# --- published figures and the registry listing -------------------------------------------------

def test_published_figures_by_dataset_task_and_template_set():
    [eurosat] = published_figures("georsclip-vit-b-32", dataset="EuroSAT")
    assert (eurosat.value, eurosat.metric, eurosat.templates) == (61.40, "top-1", "georsclip-105")
    assert "RS5M" in eurosat.source
    assert {f.dataset for f in published_figures("georsclip-vit-h-14", task="retrieval")} == {"RSITMD", "RSICD"}
    assert published_figures("georsclip-vit-b-32", dataset="EuroSAT", templates="fedrs-single") == []
    assert published_figures("openai-vit-b-32", dataset="NWPU-RESISC45")[0].value == 53.62
    assert published_figures("remoteclip-vit-b-32") == []  # not found in a readable source (see notes)
    line = format_figure(eurosat)
    assert "61.40" in line and "georsclip-105" in line and "RS5M" in line
    with pytest.raises(BackboneError, match="no registered checkpoint 'nope'"):
        published_figures("nope")


def test_published_beside_a_measurement_flags_a_different_template_set():
    [line] = published_beside("georsclip-vit-b-32", "EuroSAT", measured_templates="fedrs-single")
    assert line.startswith("published 61.40 top-1") and "different templates: measured with fedrs-single" in line
    assert published_beside("georsclip-vit-b-32", "AID-holdout") == []  # not the paper's AID
    assert published_beside(None, "EuroSAT") == []
    assert published_beside("openai-vit-b-32", "EuroSAT", measured_templates="datacomp") == [
        format_figure(published_figures("openai-vit-b-32", dataset="EuroSAT")[0])]


def test_every_figure_names_its_source_and_a_known_template_set():
    for entry in CHECKPOINTS:
        for fig in entry.figures:
            assert fig.source and 0 < fig.value <= 100
            assert fig.templates in TEMPLATE_SETS or (fig.templates == "" and "retrieval" in fig.task)
        assert entry.figures or entry.notes, f"{entry.key}: no figures and no note saying why"


def test_registry_listing_shows_every_entry():
    text = format_registry()
    detail = format_registry(detail=True)
    for entry in CHECKPOINTS:
        assert entry.key in text and entry.architecture in text
        assert entry.activation_source in detail
    rows = registry_rows()
    assert [r["key"] for r in rows] == [e.key for e in CHECKPOINTS]
    json.dumps(rows)  # plain data for --json


def test_backbone_list_all_shows_the_registry(capsys):
    """`fedrs backbone list --all` (text and --json) carries every registered checkpoint."""
    import json

    from fedrs.cli import main

    assert main(["backbone", "list", "--all", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["key"] for row in listed["checkpoints"]] == [e.key for e in checkpoints.CHECKPOINTS]
    assert "ViT-B-32" in listed["open_clip"]
    assert main(["backbone", "list", "--all"]) == 0
    text = capsys.readouterr().out
    assert all(e.key in text for e in checkpoints.CHECKPOINTS)
    assert main(["backbone", "list"]) == 0
    assert "remoteclip" not in capsys.readouterr().out
