"""FedRSCLIP: shared + private text and visual prompts on a frozen CLIP, with two alignment terms.

Objective on a client batch (see ``../shared/reference/fedrsclip.md``)::

    L = CE(logit_scale * v @ t.T, y) + lambda_dpa * L_dpa(t_s, t_p) + lambda_cma * L_cma(v, t[y], y)

with ``t = normalize(t_s + t_p)`` and ``v`` the image feature prompted by ``V_s`` and ``V_p``.
Uploaded tensors are configuration (``upload``; default the shared text prompt only, 4 x 512 =
2,048 values on ViT-B-16). Shared tensors that are not uploaded stay on the client like private
ones. Global accuracy uses only what the server holds: ``t_s``, and ``V_s`` only when it is
uploaded (otherwise the frozen image features).

Ablation switches: ``private_prompts: false`` (no private prompts; the shared visual prompt
``V_s`` stays and, unless uploaded, is trained on each client like a local one), ``visual_prompts:
false`` (text prompts only: training uses cached image features), both false (the shared text
prompt alone: truly shared-only), ``n_ctx`` 4/8/16, ``lambda_dpa: 0`` / ``lambda_cma: 0`` (the term
is not computed at all).

Privacy: :data:`SHAREABLE` is FedRSCLIP's fixed rule (only the shared prompts may ever leave a
client); ``upload`` chooses among them and can never name a private prompt.

Controls of issue #11 (configurations of this one implementation):

* ``upload: [text_shared, visual_shared]``: FedRSCLIP with the shared visual prompt federated too;
* :class:`FedRSCLIPLocal` (registry name ``fedrsclip-local``): the full module trained on each
  client alone, nothing uploaded (local-only at equal capacity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from fedrs.backbone.templates import DEFAULT_TEMPLATE, template_text_features
from fedrs.losses.classification import (
    classification_loss,
    cross_modal_alignment_loss,
    dual_prompt_alignment_loss,
)
from fedrs.methods.base import Batch, Method
from fedrs.methods.text_prompt import TextPromptConfig
from fedrs.prompts import DualPromptModel

#: FedRSCLIP's fixed rule: the tensors that may ever leave a client (``upload`` picks among them)
SHAREABLE = ("text_shared", "visual_shared")


@dataclass
class FedRSCLIPConfig(TextPromptConfig):
    """FedRSCLIP's section of a run config (``method:``); defaults are fedrs's specification.

    The prompt keys (``n_ctx``, ``text_init``, ``init_phrase``, ``init_std``; ``init_std`` also
    initialises the visual tokens) are the text-prompt baselines' own
    (:class:`~fedrs.methods.text_prompt.TextPromptConfig`), so every method reads them alike.
    """

    name: str = "fedrsclip"
    private_prompts: bool = True
    visual_prompts: bool = True
    visual_tokens: int = 2                           # V, tokens in each of V_s and V_p
    visual_depth: int = 1                            # 1 = shallow VPT; d > 1 = the first d blocks
    upload: list[str] = field(default_factory=lambda: ["text_shared"])
    lambda_dpa: float = 1.0
    dpa: Literal["cosine", "kl", "contrastive"] = "cosine"
    dpa_temperature: float = 0.5                     # contrastive DPA only (FedPGP: 0.5)
    plain_template: str = DEFAULT_TEMPLATE           # contrastive DPA negatives
    lambda_cma: float = 1.0
    cma: Literal["infonce", "cosine"] = "infonce"
    cma_temperature: float | None = None             # None: CLIP's own, 1 / logit_scale.exp()

    def __post_init__(self) -> None:
        super().__post_init__()  # n_ctx >= 1, init_std >= 0
        if self.visual_tokens < 1 and self.visual_prompts:
            raise ValueError("method.visual_tokens must be >= 1 when visual_prompts is true "
                             "(or set visual_prompts: false)")
        if self.visual_depth < 1:
            raise ValueError(f"method.visual_depth must be >= 1, got {self.visual_depth}")
        for key in ("lambda_dpa", "lambda_cma"):
            if getattr(self, key) < 0:
                raise ValueError(f"method.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("dpa_temperature", "cma_temperature"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"method.{key} must be > 0, got {value}")
        if "{}" not in self.plain_template:
            raise ValueError(f"method.plain_template must contain '{{}}' for the class name, got "
                             f"{self.plain_template!r}")
        allowed = [n for n in SHAREABLE if n != "visual_shared" or self.visual_prompts]
        bad = [n for n in self.upload if n not in allowed]
        if bad:
            raise ValueError(f"method.upload lists {bad}: uploadable tensors are {allowed} "
                             f"(private prompts are never uploaded"
                             f"{'; visual prompts are off' if not self.visual_prompts else ''})")
        if len(set(self.upload)) != len(self.upload):
            raise ValueError(f"method.upload lists a tensor twice: {self.upload}")


class FedRSCLIP(Method):
    """Dual (shared/private) text and visual prompts with DPA and CMA constraints."""

    name = "fedrsclip"
    config_class = FedRSCLIPConfig
    cfg: FedRSCLIPConfig
    SHAREABLE = SHAREABLE

    def __init__(self, cfg: FedRSCLIPConfig, backbone, classnames: Sequence[str], seed: int = 0):
        self._plain: torch.Tensor | None = None
        super().__init__(cfg, backbone, classnames, seed)

    def build_module(self) -> DualPromptModel:
        c = self.cfg
        return DualPromptModel(
            self.backbone, self.classnames, n_ctx=c.n_ctx, private=c.private_prompts,
            visual_tokens=c.visual_tokens if c.visual_prompts else 0, visual_depth=c.visual_depth,
            init=c.text_init, init_phrase=c.init_phrase, init_std=c.init_std, seed=self.seed,
        )

    def declare_uploads(self) -> Sequence[str]:
        return list(self.cfg.upload)

    def needs_images(self, train: bool, personalised: bool = True) -> bool:
        if not self.cfg.visual_prompts:
            return False
        return train or personalised or "visual_shared" in self.upload_names

    def plain_features(self) -> torch.Tensor:
        """Hand-written prompt features ``[C, D]`` (contrastive DPA negatives), computed once."""
        if self._plain is None:
            self._plain = template_text_features(self.backbone, self.classnames, self.cfg.plain_template)
        return self._plain

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # the terms stay detached tensors: client_update sums them on the device and reads them back
        # once per update (an .item() per term and step would synchronise a GPU every step)
        c, m = self.cfg, self.module
        text = m.text_features()
        image = m.image_features(batch.images, batch.features)
        labels = batch.labels
        ce = classification_loss(m.logits(image, text["combined"]), labels)
        total, terms = ce, {"ce": ce.detach()}
        if c.lambda_dpa > 0 and text["private"] is not None:
            dpa = dual_prompt_alignment_loss(
                text["shared"], text["private"], c.dpa, image_features=image, logit_scale=m.logit_scale,
                plain=self.plain_features() if c.dpa == "contrastive" else None,
                temperature=c.dpa_temperature)
            total = total + c.lambda_dpa * dpa
            terms["dpa"] = dpa.detach()
        if c.lambda_cma > 0:
            temperature = c.cma_temperature or float(1.0 / m.logit_scale)
            cma = cross_modal_alignment_loss(image, text["combined"][labels], labels, c.cma,
                                             temperature=temperature)
            total = total + c.lambda_cma * cma
            terms["cma"] = cma.detach()
        terms["loss"] = total.detach()
        return total, terms

    def logits(self, batch: Batch, personalised: bool = True) -> torch.Tensor:
        m = self.module
        if personalised:
            text = m.text_features()["combined"]
            image = m.image_features(batch.images, batch.features)
        else:
            text = m.text_features(private=False)["combined"]
            image = m.image_features(batch.images, batch.features, shared="visual_shared" in self.upload_names,
                                     private=False)
        return m.logits(image, text)


def require_no_upload(cfg: FedRSCLIPConfig, why: str) -> None:
    """Refuse a non-empty ``upload`` in a variant that uploads nothing (``why`` says why)."""
    if cfg.upload:
        raise ValueError(f"method.upload: {cfg.name} {why}; leave upload empty, got {cfg.upload}")


@dataclass
class FedRSCLIPLocalConfig(FedRSCLIPConfig):
    """FedRSCLIP's ``method:`` section (same keys and defaults) except ``upload``, which must stay
    empty: nothing leaves a client."""

    name: str = "fedrsclip-local"
    upload: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_no_upload(self, "trains every prompt on its client alone (nothing is uploaded)")


class FedRSCLIPLocal(FedRSCLIP):
    """FedRSCLIP-local: FedRSCLIP's whole module (shared and private prompts, DPA and CMA) trained
    on each client alone; uploads and downloads are 0 values per round (local-only at FedRSCLIP's
    capacity). Every prompt stays in the client's state, so personalised accuracy is each client's
    own model; the server holds no trained tensor, so its global accuracy (the untrained initial
    ``text_shared`` on frozen image features) is reported as n/a (``has_global_model``)."""

    name = "fedrsclip-local"
    config_class = FedRSCLIPLocalConfig
    cfg: FedRSCLIPLocalConfig
    has_global_model = False
    SHAREABLE = ()  # nothing ever leaves a client


__all__ = ["FedRSCLIPConfig", "FedRSCLIP", "FedRSCLIPLocalConfig", "FedRSCLIPLocal", "require_no_upload"]
