"""Hand-written class-text templates: the one default and the remote-sensing ensemble.

Every default that names a template (zero-shot, prompt initialisation, the contrastive negatives of
FedRSCLIP and FedPGP, pretraining label captions) reads it from here, so changing the study's
template is one edit.
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_TEMPLATE", "DEFAULT_INIT_PHRASE", "SINGLE_TEMPLATE", "RS_TEMPLATES"]
