"""Offline backbone pretraining: recipe validation, augmentation, determinism, resume, loading.

The training tests run the tiny architecture on a few hundred real RSICD/AID pairs (skipped,
with the reason, when ../shared/data is absent).
"""

from __future__ import annotations

import json
import logging

import open_clip
import pytest
import torch

from fedrs.backbone.factory import clear_backbone_cache, create_backbone
from fedrs.config import ConfigError
from fedrs.pretrain import PretrainConfig, augment, ensure_offline_backbone, load_recipe, pretrain
from fedrs.pretrain.training import _expected_random_init


def test_shipped_recipes_load_and_validate():
    s = load_recipe("fedrs-rsclip-s")
    tiny = load_recipe("fedrs-rsclip-tiny")
    assert s.model == "fedrs-rsclip-s" and tiny.model == "fedrs-rsclip-tiny"
    assert "AID-holdout" in s.eval_datasets and "AID" not in s.eval_datasets
    assert load_recipe("fedrs-rsclip-s", overrides={"epochs": 2}).epochs == 2


@pytest.mark.parametrize("override, match", [
    ({"epochs": 0}, "epochs"),
    ({"crop_min_area": 0.0}, "crop_min_area"),
    ({"model": "ViT-B-32"}, "not an offline fedrs model"),
    ({"epoch": 3}, "unknown key"),
    ({"lr": "fast"}, "expected a number"),
])
def test_bad_recipes_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe("fedrs-rsclip-tiny", overrides=override)


def test_augment_without_crop_is_a_dihedral_transform_of_the_input():
    cfg = PretrainConfig(model="fedrs-rsclip-tiny", crop_min_area=1.0, dihedral=True)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = augment(x, 8, cfg, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(16):
        ref = x[i].float() / 255
        matches = [(k, m) for k in range(4) for m in (0, 1)
                   if torch.allclose(out[i], torch.rot90(ref.flip(2) if m else ref, k, (1, 2)), atol=1e-5)]
        assert matches, f"sample {i} is not a rotation/mirror of its input"
        seen.add(matches[0])
    assert len(seen) > 1  # the transform is random, not always the identity


def test_augment_crop_changes_content_and_is_seeded():
    cfg = PretrainConfig(model="fedrs-rsclip-tiny", crop_min_area=0.3, dihedral=False)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a = augment(x, 8, cfg, torch.Generator().manual_seed(1))
    b = augment(x, 8, cfg, torch.Generator().manual_seed(1))
    c = augment(x, 8, cfg, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)


def test_the_expected_random_init_warning_is_dropped_only_while_pretraining_starts(caplog):
    def warned() -> bool:
        return any("initialized randomly" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING):
        with _expected_random_init("fedrs-rsclip-tiny"):
            open_clip.create_model("fedrs-rsclip-tiny", pretrained=None)
        assert not warned()
        open_clip.create_model("fedrs-rsclip-tiny", pretrained=None)  # anywhere else it is kept
        assert warned()


def test_a_present_checkpoint_is_not_rebuilt(tmp_path, monkeypatch, capsys):
    import fedrs.cli

    monkeypatch.setattr(fedrs.cli, "COMMAND_MODULES", ["fedrs.backbone.commands"])
    main = fedrs.cli.main
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path))
    ckpt = tmp_path / "fedrs-rsclip-tiny" / "open_clip_model.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    assert ensure_offline_backbone("fedrs-rsclip-tiny") == ckpt
    assert ckpt.read_bytes() == b"weights"
    # the command reports the library's decision on stdout, as it printed it before
    assert main(["backbone", "pretrain", "--model", "fedrs-rsclip-tiny", "--if-missing"]) == 0
    assert f"fedrs-rsclip-tiny: checkpoint present at {ckpt}; nothing to do" in capsys.readouterr().out
    assert main(["backbone", "pretrain", "--model", "fedrs-rsclip-tiny"]) == 0
    assert "pass --restart to train again" in capsys.readouterr().out
    assert ckpt.read_bytes() == b"weights"


@pytest.fixture
def tiny_cfg():
    return PretrainConfig(
        model="fedrs-rsclip-tiny", epochs=2, batch_size=32, lr=1e-3, max_images=96,
        decode_size=36, eval_datasets=[], label_templates=["a satellite photo of a {}."],
    )


@pytest.fixture
def real_env(real_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRS_DATA", str(real_data_root))
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    clear_backbone_cache()
    yield tmp_path
    clear_backbone_cache()


@pytest.mark.realdata
def test_pretrain_is_deterministic_resumable_and_loads_through_the_factory(real_env, tiny_cfg):
    out_a, out_b = real_env / "a", real_env / "b"
    card = pretrain(tiny_cfg, out_dir=out_a, progress=False)
    assert card["data"]["images"] == 96 and card["steps"] == 2 * 3
    assert card["history"][-1]["loss"] < card["history"][0]["loss"] + 1.0
    assert json.loads((out_a / "model_card.json").read_text())["checkpoint_sha256"] == card["checkpoint_sha256"]
    assert "# Model card: fedrs-rsclip-tiny" in (out_a / "model_card.md").read_text()
    assert not (out_a / "pretrain_state.pt").exists()  # resume point removed when done

    # interrupted after one epoch, then resumed: bit-identical weights
    assert pretrain(tiny_cfg, out_dir=out_b, progress=False, max_epochs_this_call=1) is None
    assert (out_b / "pretrain_state.pt").is_file() and not (out_b / "open_clip_model.pt").exists()
    card_b = pretrain(tiny_cfg, out_dir=out_b, progress=False)
    assert card_b["checkpoint_sha256"] == card["checkpoint_sha256"]
    a = torch.load(out_a / "open_clip_model.pt", weights_only=True)
    b = torch.load(out_b / "open_clip_model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the checkpoint is an open_clip checkpoint: the factory loads it like real weights
    bb = create_backbone("fedrs-rsclip-tiny", pretrained=str(out_a / "open_clip_model.pt"))
    assert torch.equal(bb.model.state_dict()["logit_scale"], a["logit_scale"])


@pytest.mark.realdata
def test_resume_refuses_a_state_from_another_recipe(real_env, tiny_cfg):
    from fedrs.errors import BackboneError

    out = real_env / "c"
    pretrain(tiny_cfg, out_dir=out, progress=False, max_epochs_this_call=1)
    tiny_cfg.lr = 5e-4
    with pytest.raises(BackboneError, match="different recipe"):
        pretrain(tiny_cfg, out_dir=out, progress=False)


@pytest.mark.realdata
def test_pretraining_images_are_disjoint_from_evaluation_sets(real_env):
    from fedrs.data import load_caption_set, load_scene_dataset

    train = {it.path.resolve() for it in load_caption_set("RSICD", split="train").with_images().items}
    assert len(train) == 8973
    for name in ("UCMerced", "RSSCN7", "EuroSAT", "AID-holdout"):
        assert not train.intersection(p.resolve() for p in load_scene_dataset(name).paths), name
    assert len(load_scene_dataset("AID-holdout")) + len(train) == 10000
