"""Every registered method against the method contract, on the tiny random-init backbone.

Generated from the registry (:data:`fedrs.methods.METHODS`), as timm tests every registered model:
registering a method is enough to have it tested. Each method is built from its default config
(plus :data:`TINY_CONFIG` where a default does not fit the tiny backbone) over the data its task
needs (:data:`TASK_DATA`, keyed by ``Method.task``), and must:

* declare uploads that are trainable tensors, none of them a backbone weight; everything else
  trainable is private; sizes and initial values follow the declaration;
* move tensors in and out exactly (``get_tensors`` / ``set_tensors`` round-trip, copies, errors);
* in one ``client_update`` change every one of its own tensors (if it trains) and nothing else:
  the frozen backbone and the module's buffers stay bit-identical; the reply holds exactly the
  uploads and the kept state exactly the private tensors;
* have its privacy check refuse a private tensor in an upload, and any undeclared or missing one.

What is specific to one method (exact tensor names, sizes, non-default variants) stays in
``test_baselines.py``, ``test_prompts.py`` and the retrieval tests.
"""

from __future__ import annotations

import math
from abc import ABC

import pytest
import torch
from torch import nn

from fedrs.backbone.factory import create_backbone
from fedrs.errors import FedrsError
from fedrs.federated import ClientData, LocalTrainConfig, client_evaluate, client_update
from fedrs.methods import METHODS, create_method, get_method_class, method_config
from fedrs.methods.base import Method, MethodConfig

CLASSES = ["airplane", "beach", "forest"]
NUM_SAMPLES, BATCH_SIZE = 12, 4
#: method config keys a method needs on the tiny backbone (text/vision width 64) where its
#: defaults are sized for real ones; empty for every method whose defaults fit
TINY_CONFIG: dict[str, dict] = {
    "pe-rsitr": {"adapter": {"bottleneck": 16, "shared_dim": 8}},  # default shared_dim is 64
}


def classification_data(method: Method, backbone) -> tuple[ClientData, int]:
    """A client holding 12 samples of the method's classes (frozen features in the representation
    the method trains on, and images)."""
    from fedrs.classification import image_representation

    gen = torch.Generator().manual_seed(0)
    n, size = NUM_SAMPLES, backbone.image_size
    rows = {"pooled": (), "patch_tokens": ((size // 8) ** 2,)}[image_representation(method)]  # tiny ViT: patch 8
    data = ClientData(0, torch.arange(n) % len(method.classnames), torch.arange(n), torch.arange(n),
                      features=torch.randn(n, *rows, backbone.embed_dim, generator=gen),
                      images=torch.randn(n, 3, size, size, generator=gen))
    return data, len(method.classnames)


def retrieval_data(method: Method, backbone) -> tuple[ClientData, int]:
    """A caption pool of 12 images with two captions each, handed to the method; the client holds
    all of it (labels index the pool); logits rank the pool's images."""
    from fedrs.retrieval.data import RetrievalSet

    gen = torch.Generator().manual_seed(0)
    n, size = NUM_SAMPLES, backbone.image_size
    words = ["river", "runway", "forest", "beach", "harbor", "farmland"]
    pool = RetrievalSet("tiny", [str(i) for i in range(n)], torch.randn(n, 3, size, size, generator=gen),
                        [f"a {words[i % 6]} seen from above, view {j}" for i in range(n) for j in range(2)],
                        torch.arange(n).repeat_interleave(2))
    method.set_pool(pool, torch.arange(n))
    return ClientData(0, torch.arange(n), torch.arange(n), torch.arange(n), None, pool.images), n


#: Method.task -> builder of one client's data for a method of that task: (data, logits width)
TASK_DATA = {"classification": classification_data, "retrieval": retrieval_data}
NAMES = sorted(METHODS)


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def build(name: str, backbone, seed: int = 0) -> Method:
    return create_method({"name": name, **TINY_CONFIG.get(name, {})}, backbone, CLASSES, seed=seed)


def with_data(name: str, backbone) -> tuple[Method, ClientData, int]:
    method = build(name, backbone)
    data, width = TASK_DATA[method.task](method, backbone)
    return method, data, width


def backbone_state(backbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backbone.model.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_a_method_of_that_name(name):
    cls = get_method_class(name)
    assert issubclass(cls, Method) and cls.name == name
    assert issubclass(cls.config_class, MethodConfig) and method_config(name).name == name
    assert cls.task in TASK_DATA, (f"method {name!r} has task {cls.task!r}: add a builder of its "
                                   f"client data to TASK_DATA in {__file__}")


@pytest.mark.parametrize("name", NAMES)
def test_uploads_are_trainable_tensors_and_the_rest_is_private(name, backbone):
    method = build(name, backbone)
    trainable = [n for n, p in method.module.named_parameters() if p.requires_grad]
    assert list(method.trainable_names) == trainable
    assert set(method.upload_names) <= set(trainable) and len(set(method.upload_names)) == len(method.upload_names)
    assert list(method.private_names) == [n for n in trainable if n not in method.upload_names]
    frozen = {id(p) for p in backbone.model.parameters()}
    assert not any(id(p) in frozen for p in method.parameters())  # no backbone weight is trainable
    assert set(method.initial_global()) == set(method.upload_names)
    assert set(method.initial_private(0)) == set(method.private_names)
    sizes = method.describe()
    numel = {n: p.numel() for n, p in method.module.named_parameters()}
    assert sizes["trainable_params"] == sum(numel[n] for n in trainable)
    assert sizes["upload_values_per_client_round"] == sum(numel[n] for n in method.upload_names)
    assert set(sizes["private_tensors"]) == set(method.private_names)
    # the same seed builds the same initial tensors
    again = build(name, backbone).get_tensors(method.trainable_names)
    assert all(torch.equal(v, again[n]) for n, v in method.get_tensors(method.trainable_names).items())


@pytest.mark.parametrize("name", NAMES)
def test_get_and_set_tensors_round_trip(name, backbone):
    method = build(name, backbone)
    names = method.trainable_names
    original = method.get_tensors(names)
    assert all(t.device.type == "cpu" and not t.requires_grad for t in original.values())
    changed = {n: t + 1.0 for n, t in original.items()}
    for t in original.values():
        t.add_(5.0)  # get_tensors hands out copies: editing one leaves the method alone
    method.set_tensors(changed)
    assert all(torch.equal(v, changed[n]) for n, v in method.get_tensors(names).items())
    method.set_tensors({n: t - 5.0 for n, t in original.items()})
    assert all(torch.equal(v, original[n] - 5.0) for n, v in method.get_tensors(names).items())
    with pytest.raises(FedrsError, match="has no tensors"):
        method.set_tensors({"not_a_tensor": torch.zeros(1)})
    if names:
        with pytest.raises(FedrsError, match="has shape"):
            method.set_tensors({names[0]: torch.zeros(*original[names[0]].shape, 2)})


def check_client_update(method: Method, data: ClientData, width: int) -> None:
    """One ``client_update`` changes every trainable tensor of ``method`` (if it trains) and
    nothing else; the reply holds exactly the uploads, the kept state exactly the private tensors.
    Also used by ``test_baselines.py`` for non-default variants."""
    backbone = method.backbone
    frozen = backbone_state(backbone)
    buffers = {n: b.clone() for n, b in method.module.named_buffers()}
    before = method.get_tensors(method.trainable_names)
    res = client_update(method, method.initial_global(), method.initial_private(0), data,
                        LocalTrainConfig(lr=0.05, batch_size=BATCH_SIZE))
    after = method.get_tensors(method.trainable_names)

    assert all(torch.equal(v, frozen[k]) for k, v in backbone.model.state_dict().items())  # backbone untouched
    assert all(p.grad is None for p in backbone.model.parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in method.module.named_buffers())
    assert set(res.shared) == set(method.upload_names) and set(res.client_state) == set(method.private_names)
    assert all(torch.equal(res.shared[n], after[n]) for n in method.upload_names)
    assert all(torch.equal(res.client_state[n], after[n]) for n in method.private_names)
    assert res.num_examples == data.num_train
    if method.trains and method.trainable_names:
        assert res.metrics["steps"] == math.ceil(data.num_train / BATCH_SIZE)
        assert all(math.isfinite(v) for v in res.metrics.values())
        unchanged = [n for n in method.trainable_names if torch.equal(before[n], after[n])]
        assert not unchanged, f"{method.name}: trainable tensors {unchanged} did not train"
    else:
        assert res.metrics["steps"] == 0 and all(torch.equal(before[n], after[n]) for n in before)
    # the trained tensors evaluate: one score per class (or pool item) for every test sample
    batch = data.batch(data.test_indices[:BATCH_SIZE], method.needs_images(train=False), method.device)
    assert method.logits(batch).shape == (BATCH_SIZE, width)
    scores = client_evaluate(method, res.shared, res.client_state, data, batch_size=BATCH_SIZE)
    assert scores["total"] == data.test_indices.numel() and 0 <= scores["accuracy"] <= 1


def check_privacy(method: Method) -> None:
    """The privacy check passes exactly the declared uploads and refuses a private tensor, an
    undeclared one and a missing one. Also used by ``test_baselines.py``."""
    upload = method.get_tensors(method.upload_names)
    method.check_upload(upload)
    for private in method.private_names:
        with pytest.raises(FedrsError, match="privacy check failed"):
            method.check_upload({**upload, private: method.get_tensors([private])[private]})
    with pytest.raises(FedrsError, match="declares"):
        method.check_upload({**upload, "not_declared": torch.zeros(1)})
    if method.upload_names:
        with pytest.raises(FedrsError, match="declares"):
            method.check_upload({n: t for n, t in upload.items() if n != method.upload_names[0]})


@pytest.mark.parametrize("name", NAMES)
def test_one_client_update_changes_only_its_own_tensors(name, backbone):
    torch.manual_seed(0)  # methods that draw from torch's global generator (caption choice, dropout)
    check_client_update(*with_data(name, backbone))


@pytest.mark.parametrize("name", NAMES)
def test_privacy_check_refuses_private_undeclared_and_missing_tensors(name, backbone):
    check_privacy(build(name, backbone))


def test_a_method_missing_a_required_hook_cannot_be_built(backbone):
    assert issubclass(Method, ABC)
    assert Method.__abstractmethods__ == {"build_module", "declare_uploads", "loss", "logits"}

    class NoLogits(Method):
        def build_module(self):
            return nn.Module()

        def declare_uploads(self):
            return []

        def loss(self, batch):
            raise NotImplementedError

    with pytest.raises(TypeError, match="logits"):
        NoLogits(MethodConfig("x"), backbone, CLASSES)

    class UploadsAFrozenTensor(NoLogits):
        def declare_uploads(self):
            return ["weight"]

        def logits(self, batch, personalised=True):
            raise NotImplementedError

    with pytest.raises(FedrsError, match=r"declares uploads \['weight'\] that are not among its trainable"):
        UploadsAFrozenTensor(MethodConfig("x"), backbone, CLASSES)
