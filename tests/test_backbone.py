"""Backbone factory, feature cache and zero-shot evaluation on the tiny architecture."""

from __future__ import annotations

import types

import pytest
import torch

from fedrs.backbone import factory
from fedrs.backbone.factory import assert_frozen, clear_backbone_cache, create_backbone
from fedrs.errors import BackboneError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRS_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEDRS_OFFLINE", "1")
    clear_backbone_cache()
    yield
    clear_backbone_cache()


def test_random_backbone_is_frozen_shared_and_labelled():
    a = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    b = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    assert a is b  # one instance per process
    assert not a.model.training
    assert all(not p.requires_grad for p in a.model.parameters())
    assert_frozen(a)
    assert a.label == "fedrs-rsclip-tiny/random-init"
    assert (a.embed_dim, a.text_width, a.image_size, a.context_length) == (64, 64, 32, 32)
    assert a.tokenizer(["a satellite photo of a beach."]).shape == (1, 32)


def test_unknown_model_names_alternatives():
    with pytest.raises(BackboneError, match="unknown backbone model 'ViT-Q-99'.*fedrs-rsclip-s"):
        create_backbone("ViT-Q-99", pretrained="random")


def test_hub_weights_offline_fail_fast_naming_alternatives():
    with pytest.raises(BackboneError) as info:
        create_backbone("ViT-B-16", pretrained="openai")
    msg = str(info.value)
    assert "unreachable" in msg and "local open_clip checkpoint" in msg and "fedrs backbone pretrain" in msg


def test_unknown_tag_is_named():
    with pytest.raises(BackboneError, match="unknown pretrained tag 'nonsense'"):
        create_backbone("ViT-B-32", pretrained="nonsense")


def test_missing_offline_checkpoint_names_the_command():
    with pytest.raises(BackboneError, match="fedrs backbone pretrain --model fedrs-rsclip-s"):
        create_backbone("fedrs-rsclip-s")


def test_open_clip_model_without_weights_is_refused():
    with pytest.raises(BackboneError, match="pass a pretrained tag"):
        create_backbone("ViT-B-32")


def _random_state_dict(seed: int = 1):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model("fedrs-rsclip-tiny").state_dict()


def test_local_checkpoint_file_loads_through_open_clip(tmp_path):
    sd = _random_state_dict()
    path = tmp_path / "my-rs-clip.pt"
    torch.save(sd, path)
    bb = create_backbone("fedrs-rsclip-tiny", pretrained=str(path))
    assert torch.equal(bb.model.state_dict()["text_projection"], sd["text_projection"])
    assert bb.label == "fedrs-rsclip-tiny/my-rs-clip"
    assert len(bb.fingerprint) == 64


def test_wrapped_state_dict_like_remoteclip_training_checkpoints(tmp_path):
    sd = _random_state_dict(2)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    bb = create_backbone("fedrs-rsclip-tiny", pretrained=str(path))
    assert torch.equal(bb.model.state_dict()["positional_embedding"], sd["positional_embedding"])


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    import open_clip

    path = tmp_path / "other.pt"
    torch.save(open_clip.create_model("fedrs-rsclip-s").state_dict(), path)
    with pytest.raises(BackboneError, match="does not fit open_clip model 'fedrs-rsclip-tiny'"):
        create_backbone("fedrs-rsclip-tiny", pretrained=str(path))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(BackboneError, match="checkpoint file not found"):
        create_backbone("fedrs-rsclip-tiny", pretrained=str(tmp_path / "nope.pt"))


def test_offline_checkpoint_is_found_in_models_root(tmp_path):
    path = factory.offline_checkpoint_path("fedrs-rsclip-tiny")
    path.parent.mkdir(parents=True)
    torch.save(_random_state_dict(3), path)
    bb = create_backbone("fedrs-rsclip-tiny")
    assert bb.checkpoint == path
    assert bb.label.startswith("fedrs-rsclip-tiny/offline-")
    # the same build passed as a file (as `fedrs backbone pretrain` does for its model card) keeps
    # the build's label, not the generic file name
    by_file = create_backbone("fedrs-rsclip-tiny", pretrained=str(path), cache=False)
    assert by_file.label == bb.label


def _synthetic_dataset(tmp_path, n=6):
    from PIL import Image

    paths = []
    for i in range(n):
        p = tmp_path / "imgs" / f"c{i % 2}" / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 40, 255 - i * 40, 90)).save(p)
        paths.append(p)
    return types.SimpleNamespace(
        name="Synthetic", paths=paths, labels=[i % 2 for i in range(n)],
        classnames=["c0", "c1"], prompt_names=["forest", "beach"],
    )


def test_feature_cache_is_reused_and_keyed_by_weights(tmp_path, monkeypatch):
    from fedrs.backbone import features

    ds = _synthetic_dataset(tmp_path)
    bb = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    calls = []
    real = features.encode_images
    monkeypatch.setattr(features, "encode_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    f1 = features.image_features(bb, ds, progress=False)
    f2 = features.image_features(bb, ds, progress=False)
    assert f1.shape == (6, 64) and torch.equal(f1, f2)
    assert len(calls) == 1  # second call read the disk cache
    with torch.inference_mode():
        direct = bb.model.encode_image(torch.stack([bb.preprocess(features.load_rgb(p)) for p in ds.paths]))
    assert torch.allclose(f1, direct, atol=1e-5)
    # different weights -> different key -> recomputed
    other = factory.Backbone(**{**bb.__dict__, "fingerprint": "other"})
    assert features.cache_key(other, ds.name, ds.paths) != features.cache_key(bb, ds.name, ds.paths)


def test_zero_shot_predicts_with_text_classifier(tmp_path):
    from fedrs.evaluate.zeroshot import RS_TEMPLATES, text_classifier, zero_shot

    ds = _synthetic_dataset(tmp_path)
    bb = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    weights = text_classifier(bb, ds.prompt_names, RS_TEMPLATES)
    assert weights.shape == (64, 2)
    assert torch.allclose(weights.norm(dim=0), torch.ones(2), atol=1e-5)
    res = zero_shot(bb, ds, progress=False)
    assert res.logits.shape == (6, 2)
    assert 0.0 <= res.top1 <= 100.0
    assert (res.predictions == res.logits.argmax(1)).all()
    per_class = res.per_class_accuracy()
    assert set(per_class) == {"c0", "c1"}
    expected = sum(per_class.values()) / 2  # balanced classes: mean per-class = overall
    assert res.top1 == pytest.approx(expected)
