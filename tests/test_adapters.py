"""MRS-Adapter: exact parameter count on ViT-B-32, identity at init, sharing, fp32, no mutation."""

import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.retrieval.adapters import AdapterError, BottleneckAdapter, MRSAdapter, tower_widths
from fedrs.retrieval.model import RetrievalModel


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def test_vit_b32_parameter_count_matches_paper():
    model = create_backbone("ViT-B-32", pretrained="random").model
    widths = tower_widths(model)
    assert widths == {"vision": 768, "text": 512}
    assert sum(p.numel() for p in MRSAdapter(widths).parameters()) == 161_088
    assert sum(p.numel() for p in BottleneckAdapter(widths).parameters()) == 165_248


def test_shapes_and_shared_channels():
    ad = MRSAdapter({"vision": 48, "text": 32}, bottleneck=8, shared_dim=4)
    assert ad.up["vision"].out_features == 44 and ad.up["text"].out_features == 28
    for lin in [*ad.up.values(), ad.up_shared]:
        lin.weight.data.normal_()
    ad.eval()
    out_v = ad(torch.randn(2, 5, 48, dtype=torch.float64), "vision")
    assert out_v.shape == (2, 5, 48) and out_v.dtype == torch.float64  # computed in fp32, cast back
    # same bottleneck activation -> the last shared_dim channels agree across modalities
    for m in ("vision", "text"):
        ad.down[m].weight.data.zero_()
        ad.down[m].bias.data.fill_(1.0)
    v, t = ad(torch.randn(1, 48), "vision"), ad(torch.randn(1, 32), "text")
    assert torch.equal(v[:, -4:], t[:, -4:]) and not torch.equal(v[:, :4], t[:, :4])
    with pytest.raises(AdapterError):
        MRSAdapter({"vision": 64, "text": 64}, shared_dim=64)
    with pytest.raises(AdapterError):
        ad(torch.randn(1, 48), "audio")


def test_zero_init_adapter_leaves_backbone_outputs_unchanged(tiny):
    torch.manual_seed(0)
    adapter = MRSAdapter(tower_widths(tiny.model), bottleneck=16, shared_dim=8)
    model = RetrievalModel(tiny, adapter=adapter).train()  # dropout active: still exact
    images = torch.randn(2, 3, tiny.image_size, tiny.image_size)
    tokens = tiny.tokenizer(["dense residential area", "a runway"])
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), tiny.model.encode_image(images))
        # the text tower runs only up to the last [EOT] (exact up to float summation order)
        assert torch.allclose(model.encode_text(tokens), tiny.model.encode_text(tokens), atol=1e-5)
    # the adapter is applied: once up-projections move, outputs move; the backbone is untouched
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    with torch.no_grad():
        adapter.up_shared.weight.fill_(0.1)
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.encode_image(images), tiny.model.encode_image(images))
    assert all(torch.equal(before[k], v) for k, v in tiny.model.state_dict().items())
    assert all(not p.requires_grad for p in tiny.model.parameters())
    assert list(model.state_dict()) == [f"adapter.{k}" for k in adapter.state_dict()]
