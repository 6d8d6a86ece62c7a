"""The privacy check is independent of the declaration it guards (issue #11).

What may leave a client is each method's fixed rule (``Method.SHAREABLE`` and ``NEVER_SHARED``,
:meth:`Method.may_share`), not its ``upload_names``: a wrong declaration, a config that lists a
private tensor, a client that sends one anyway and a Flower reply carrying an extra tensor are each
refused, by the method when it is built, by the client before it sends and by the server on
receipt, with an error that names the tensor. Tiny random-init backbone.
"""

from __future__ import annotations

import pytest
import torch
from test_federated import CLASSES, tiny_config
from test_methods_registry import TINY_CONFIG
from torch import nn

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.errors import FedrsError
from fedrs.federated import ClientData, ClientResult, LocalTrainConfig, aggregate, client_update
from fedrs.federated.client import MOMENTUM
from fedrs.federated.server import check_received
from fedrs.methods import METHODS, create_method
from fedrs.methods.base import NEVER_SHARED, Method, MethodConfig, matches
from fedrs.methods.fedrsclip import FedRSCLIP
from fedrs.methods.local import LocalOnly
from fedrs.runs import run_config

PRIVATE = ("text_private", "visual_private")


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("fedrs-rsclip-tiny", pretrained="random")


def client_data(backbone, n: int = 8) -> ClientData:
    gen = torch.Generator().manual_seed(0)
    return ClientData(0, torch.arange(n) % 3, torch.arange(n), torch.arange(n),
                      features=torch.randn(n, backbone.embed_dim, generator=gen),
                      images=torch.randn(n, 3, 32, 32, generator=gen))


# --- the rule is the method's, not its declaration's ----------------------------------------------

def test_momentum_prefix_is_the_client_state_prefix():
    assert matches(MOMENTUM + "text_shared", NEVER_SHARED)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_shares_only_by_its_rule(name, backbone):
    method = create_method({"name": name, **TINY_CONFIG.get(name, {})}, backbone, CLASSES)
    assert all(method.may_share(n) for n in method.upload_names)
    buffers = [n for n, _ in method.module.named_buffers()]
    state = [MOMENTUM + n for n in method.trainable_names]
    assert method.never_shared(buffers + state + ["not_a_tensor"]) == sorted(buffers + state + ["not_a_tensor"])
    if not method.pools_data:
        assert not [n for n in method.trainable_names if matches(n, NEVER_SHARED) and method.may_share(n)]


def test_each_method_may_share_only_its_global_tensors(backbone):
    def shareable(cfg: dict) -> list[str]:
        method = create_method(cfg, backbone, CLASSES)
        return [n for n in method.trainable_names if method.may_share(n)]

    assert shareable({"name": "fedrsclip"}) == ["text_shared", "visual_shared"]
    assert shareable({"name": "fedrsclip", "upload": []}) == ["text_shared", "visual_shared"]  # rule, not config
    assert shareable({"name": "fedrsclip-local"}) == []
    assert shareable({"name": "local"}) == []
    assert shareable({"name": "promptfl", "visual_tokens": 2}) == ["ctx"]
    assert shareable({"name": "fedpgp"}) == ["sigma"]
    assert shareable({"name": "fedotp"}) == ["ctx_global"]
    # one party holds all data: its whole model is the server's
    assert shareable({"name": "centralised"}) == ["text_shared", "text_private", "visual_shared", "visual_private"]


# --- a wrong declaration -----------------------------------------------------------------------

class DeclaresItsPrivatePrompt(FedRSCLIP):
    """A FedRSCLIP whose declaration (wrongly) uploads the private text prompt."""

    def declare_uploads(self):
        return ["text_shared", "text_private"]


class LocalOnlyThatUploads(LocalOnly):
    """Local-only whose declaration (wrongly) uploads its prompt."""

    def declare_uploads(self):
        return ["ctx"]


class OwnMethod(Method):
    """A method of its own with a shared and a local tensor, declaring both."""

    def build_module(self):
        module = nn.Module()
        module.shared = nn.Parameter(torch.zeros(2))
        module.adapter_local = nn.Parameter(torch.zeros(2))
        return module

    def declare_uploads(self):
        return ["shared", "adapter_local"]

    def loss(self, batch):
        raise NotImplementedError

    def logits(self, batch, personalised=True):
        raise NotImplementedError


@pytest.mark.parametrize("cls, cfg, tensor", [
    (DeclaresItsPrivatePrompt, {"name": "fedrsclip"}, "text_private"),
    (LocalOnlyThatUploads, {"name": "local"}, "ctx"),
    (OwnMethod, None, "adapter_local"),
])
def test_a_method_with_a_wrong_declaration_is_refused(backbone, cls, cfg, tensor):
    from fedrs.methods import method_config

    config = method_config(cfg) if cfg else MethodConfig("own")
    with pytest.raises(FedrsError, match=rf"privacy check failed: .*declares uploads \['{tensor}'\]"):
        cls(config, backbone, CLASSES)


def test_a_declaration_changed_after_building_is_refused_before_sending(backbone):
    """The client-side check does not read the declaration it guards: a method whose upload_names
    name a private prompt (the old check passed it) is refused by client_update."""
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    method.upload_names = ("text_shared", "text_private")
    with pytest.raises(FedrsError, match=r"privacy check failed: the upload contains \['text_private'\]"):
        client_update(method, {"text_shared": method.initial_global()["text_shared"]}, {}, client_data(backbone),
                      LocalTrainConfig(lr=0.01, batch_size=4))


@pytest.mark.parametrize("extra", ["text_private", "visual_private", "text.prefix", "momentum.text_shared"])
def test_the_client_refuses_private_tensors_buffers_and_state(backbone, extra):
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    upload = {**method.get_tensors(method.upload_names), extra: torch.zeros(1)}
    with pytest.raises(FedrsError, match=rf"privacy check failed: the upload contains \['{extra}'\]"):
        method.check_upload(upload)


# --- a config that lists a private tensor ------------------------------------------------------

@pytest.mark.parametrize("method, tensor", [
    ({"name": "fedrsclip", "upload": ["text_shared", "text_private"]}, "text_private"),
    ({"name": "fedrsclip", "upload": ["visual_private"]}, "visual_private"),
    ({"name": "fedrsclip-local", "upload": ["text_shared"]}, "text_shared"),
    ({"name": "centralised", "upload": ["text_private"]}, "text_private"),
])
def test_a_config_listing_a_private_tensor_is_refused(method, tensor):
    with pytest.raises(ConfigError, match=tensor):
        run_config(tiny_config(method=method))


# --- the server, on receipt --------------------------------------------------------------------

def test_the_server_refuses_private_tensors_whatever_the_declaration(backbone):
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    private = method.get_tensors(["text_private"])
    leaked = ClientResult(3, {**method.initial_global(), **private}, 4)
    # even with the private prompt among the names the server averages, the method's rule refuses it
    with pytest.raises(FedrsError, match=r"on receipt: client 3 sent \['text_private'\], which never leave"):
        aggregate([leaked], ["text_shared", "text_private"], method=method)
    with pytest.raises(FedrsError,
                       match=r"on receipt: client 3 sent \['text_private'\], which the server did not send"):
        aggregate([leaked], method.upload_names)
    ok = aggregate([ClientResult(0, method.initial_global(), 4)], method.upload_names, method=method)
    assert torch.equal(ok["text_shared"], method.initial_global()["text_shared"])


def test_the_server_refuses_a_tensor_it_did_not_send(backbone):
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    shared = method.get_tensors(["text_shared", "visual_shared"])  # visual_shared is shareable, not sent
    with pytest.raises(FedrsError, match=r"sent \['visual_shared'\], which the server did not send"):
        check_received(1, shared, ["text_shared"], method)
    with pytest.raises(FedrsError, match=r"client 1 sent \[\], expected exactly \['text_shared'\]"):
        check_received(1, {}, ["text_shared"], method)
    with pytest.raises(FedrsError, match=r"sent \['ctx'\], which never leave"):  # local-only sends nothing
        aggregate([ClientResult(0, {"ctx": torch.zeros(1)}, 1)], [], method=create_method("local", backbone, CLASSES))


def test_a_flower_reply_carrying_an_extra_tensor_is_refused():
    pytest.importorskip("flwr", reason="flwr is not installed (pip install 'fedrs[flower]')")
    from flwr.app import MetricRecord, RecordDict

    from fedrs.federated.flower.server_app import receive_train_reply
    from fedrs.federated.flower.task import ARRAYS, METRICS, NUM_EXAMPLES, TERM, to_record

    backbone = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    method = create_method({"name": "fedrsclip"}, backbone, CLASSES)
    sent = list(method.initial_global())

    def reply(tensors: dict) -> RecordDict:
        return RecordDict({ARRAYS: to_record(tensors), METRICS: MetricRecord({NUM_EXAMPLES: 7, TERM + "loss": 0.5})})

    honest = receive_train_reply(method, 2, reply(method.initial_global()), sent)
    assert ((honest.client_id, set(honest.shared), honest.num_examples, honest.metrics)
            == (2, {"text_shared"}, 7, {"loss": 0.5}))
    for extra, why in (("text_private", "never leave a client"), ("visual_shared", "the server did not send"),
                       ("text.prefix", "never leave a client")):
        tampered = reply({**method.initial_global(), extra: torch.zeros(2)})
        with pytest.raises(FedrsError, match=rf"on receipt: client 2 sent \['{extra}'\], which {why}"):
            receive_train_reply(method, 2, tampered, sent)
