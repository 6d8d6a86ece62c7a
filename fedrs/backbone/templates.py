"""Hand-written class-text templates: the one default, the remote-sensing ensemble, and the one
function that turns templates into class text features.

Every default that names a template (zero-shot, prompt initialisation, FedRSCLIP's contrastive
DPA negatives, pretraining label captions) reads it from here, so changing the study's
template is one edit. Every class-text feature computed from templates (the zero-shot method and
``fedrs zeroshot``, the engine's zero-shot reference, the contrastive negatives) is
:func:`template_text_features`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fedrs.backbone.text_tower import encode_text_tokens

#: the single template of the FedRSCLIP paper's zero-shot baseline (arXiv 2501.02461, Sec. IV)
DEFAULT_TEMPLATE = "a satellite photo of a {}."

#: the context words of :data:`DEFAULT_TEMPLATE` (what a "phrase" prompt initialisation embeds)
DEFAULT_INIT_PHRASE = DEFAULT_TEMPLATE.split("{}")[0].strip()

#: :data:`DEFAULT_TEMPLATE` as a one-template ensemble
SINGLE_TEMPLATE = (DEFAULT_TEMPLATE,)

#: a remote-sensing prompt ensemble (averaged class embeddings), in the spirit of RemoteCLIP's
#: and GeoRSCLIP's evaluation templates
RS_TEMPLATES = (
    DEFAULT_TEMPLATE,
    "a satellite image of {}.",
    "an aerial photo of a {}.",
    "an aerial image of {}.",
    "a remote sensing image of {}.",
    "a remote sensing photo of a {}.",
    "a top-down view of {}.",
    "satellite imagery of {}.",
)

#: zero-shot templates whose fixed words occur in no pretraining caption of the offline backbones
#: (neither an RSICD caption nor a label-derived one; ``fedrs.pretrain.selection`` checks it against
#: the captions at run time): the zero-shot column that the label captions cannot have taught
UNSEEN_TEMPLATES = (
    "a picture showing {} from high above.",
    "{} as recorded by an earth observation sensor.",
    "a snapshot of {}, seen from above.",
)

#: classes per text-encoder pass of a template ensemble (what ``fedrs zeroshot`` has always used;
#: the grouping is part of the float operation order, so it is fixed)
ENSEMBLE_CLASSES_PER_PASS = 16


@torch.no_grad()
def template_text_features(backbone, names: Sequence[str],
                           templates: str | Sequence[str] = DEFAULT_TEMPLATE) -> torch.Tensor:
    """L2-normalised class text features ``[C, D]`` from hand-written templates, on the backbone's
    device (``backbone``: ``.model`` an open_clip CLIP, ``.tokenizer``, ``.device``).

    * ``templates`` one template (a ``str``): ``normalize(encode_text(template.format(name)))``,
      every class in one encoder pass;
    * a sequence of templates (an ensemble, possibly of one): each template's features normalised,
      averaged over the templates and normalised again, classes in groups of
      :data:`ENSEMBLE_CLASSES_PER_PASS` per encoder pass (open_clip's ``build_zero_shot_classifier``,
      operation for operation, but with truncated passes).

    A one-template ensemble points the same way as the single template but is renormalised, so it
    differs in the last bits (about 1e-7); the zero-shot method and ``fedrs zeroshot`` use the
    ensemble form, the engine's zero-shot reference and the contrastive negatives the single form.

    Each pass runs the text tower only up to the last end-of-text token of its texts
    (:func:`fedrs.backbone.text_tower.encode_text_tokens`): ``encode_text``'s features up to float
    rounding, at a fraction of the 77-token context's cost.
    """
    tokenizer = backbone.tokenizer

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        return encode_text_tokens(backbone.model, tokens).features
    if isinstance(templates, str):
        tokens = tokenizer([templates.format(n) for n in names]).to(backbone.device)
        return F.normalize(encode(tokens).float(), dim=-1)
    templates, names = list(templates), list(names)
    if not templates or not names:
        raise ValueError(f"template_text_features needs at least one template and one class name, "
                         f"got {len(templates)} and {len(names)}")
    groups = []
    for start in range(0, len(names), ENSEMBLE_CLASSES_PER_PASS):
        group = names[start:start + ENSEMBLE_CLASSES_PER_PASS]
        tokens = tokenizer([t.format(n) for n in group for t in templates]).to(backbone.device)
        features = F.normalize(encode(tokens).float(), dim=-1)
        features = features.reshape(len(group), len(templates), -1).mean(dim=1)
        groups.append(features / features.norm(dim=1, keepdim=True))
    return torch.cat(groups)


__all__ = [
    "DEFAULT_TEMPLATE", "DEFAULT_INIT_PHRASE", "SINGLE_TEMPLATE", "RS_TEMPLATES", "UNSEEN_TEMPLATES",
    "ENSEMBLE_CLASSES_PER_PASS", "template_text_features",
]
