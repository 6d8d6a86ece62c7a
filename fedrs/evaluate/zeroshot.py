"""Zero-shot scene classification with a frozen CLIP backbone.

Class text embeddings are the ensemble form of :func:`fedrs.backbone.templates.template_text_features`
(open_clip's zero-shot classifier, operation for operation) over the readable class names
(``SceneDataset.prompt_names``) and one or more templates; image embeddings come from
the disk feature cache. ``fedrs zeroshot`` writes ``results/zero_shot/<backbone>.{csv,md}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fedrs.backbone.factory import Backbone, create_backbone
from fedrs.backbone.features import image_features
from fedrs.backbone.templates import RS_TEMPLATES, SINGLE_TEMPLATE, UNSEEN_TEMPLATES, template_text_features

#: datasets the offline study evaluates on (AID only outside the RSICD pretraining images)
EVAL_DATASETS = ("UCMerced", "RSSCN7", "EuroSAT", "AID-holdout")


@dataclass
class ZeroShotResult:
    dataset: str
    backbone: str
    classnames: list[str]
    labels: np.ndarray  # [N] int
    predictions: np.ndarray  # [N] int
    logits: np.ndarray  # [N, C] float

    @property
    def top1(self) -> float:
        return float((self.labels == self.predictions).mean() * 100.0)

    def per_class_accuracy(self) -> dict[str, float]:
        out = {}
        for c, name in enumerate(self.classnames):
            mask = self.labels == c
            out[name] = float((self.predictions[mask] == c).mean() * 100.0) if mask.any() else float("nan")
        return out


def text_classifier(backbone: Backbone, prompt_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """L2-normalised class embeddings ``[embed_dim, C]`` (contiguous, on the CPU) averaged over
    ``templates``: the ensemble form of :func:`~fedrs.backbone.templates.template_text_features`."""
    templates = [templates] if isinstance(templates, str) else list(templates)
    return template_text_features(backbone, prompt_names, templates).t().contiguous().cpu()


def zero_shot(backbone: Backbone, dataset, templates: Sequence[str] = SINGLE_TEMPLATE,
              progress: bool = True) -> ZeroShotResult:
    """Predict every image of ``dataset`` (``.paths``, ``.labels``, ``.prompt_names``)."""
    feats = F.normalize(image_features(backbone, dataset, progress=progress), dim=-1)
    weights = text_classifier(backbone, dataset.prompt_names, templates)
    logits = backbone.model.logit_scale.exp().item() * feats @ weights
    return ZeroShotResult(
        dataset=dataset.name, backbone=backbone.label, classnames=list(dataset.classnames),
        labels=np.asarray(dataset.labels), predictions=logits.argmax(dim=-1).numpy(), logits=logits.numpy(),
    )


def evaluate_zero_shot(
    model: str | Backbone,
    pretrained: str | None = None,
    datasets: Sequence[str] | None = None,
    templates: Sequence[str] = SINGLE_TEMPLATE,
    ensemble: Sequence[str] | None = RS_TEMPLATES,
    progress: bool = True,
    unseen: Sequence[str] | None = UNSEEN_TEMPLATES,
) -> list[dict]:
    """Top-1 per dataset for one backbone: rows for a table (and the model card).

    ``top1`` uses ``templates`` (the study's evaluation template), ``top1_ensemble`` the
    remote-sensing ensemble and ``top1_unseen_templates`` templates that appear in no pretraining
    caption of the offline backbones (issue 11: the offline backbone's label captions include the
    evaluation template, so ``top1`` partly measures that)."""
    from fedrs.data import load_scene_dataset

    backbone = model if isinstance(model, Backbone) else create_backbone(model, pretrained)
    rows = []
    for name in datasets or EVAL_DATASETS:
        ds = load_scene_dataset(name)
        single = zero_shot(backbone, ds, templates, progress=progress)
        row = {
            "dataset": name,
            "backbone": backbone.label,
            "classes": len(ds.classnames),
            "images": len(ds),
            "template": templates[0] if len(templates) == 1 else f"{len(templates)} templates",
            "top1": round(single.top1, 2),
        }
        if ensemble:
            row["top1_ensemble"] = round(zero_shot(backbone, ds, ensemble, progress=False).top1, 2)
        if unseen:
            row["top1_unseen_templates"] = round(zero_shot(backbone, ds, unseen, progress=False).top1, 2)
        row["chance"] = round(100.0 / len(ds.classnames), 2)
        rows.append(row)
    return rows


def write_zero_shot_table(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<backbone>.csv`` and ``.md`` into ``out_dir`` (atomically)."""
    import pandas as pd

    from fedrs.io import write_text_atomic

    label = rows[0]["backbone"]
    slug = label.replace("/", "__")
    df = pd.DataFrame(rows)
    csv = write_text_atomic(Path(out_dir) / f"{slug}.csv", df.to_csv(index=False))
    header = (
        f"# Zero-shot top-1 (%) - backbone `{label}`\n\n"
        f"Single template {SINGLE_TEMPLATE[0]!r}; ensemble = {len(RS_TEMPLATES)} remote-sensing templates; "
        f"unseen templates = {len(UNSEEN_TEMPLATES)} templates whose words occur in no pretraining caption "
        f"({'; '.join(repr(t) for t in UNSEEN_TEMPLATES)}). The offline backbones' label captions contain "
        "the single template and AID's class names. AID is evaluated only on images outside RSICD training "
        "(AID-holdout: seen classes, unseen images).\n\n"
    )
    md = write_text_atomic(Path(out_dir) / f"{slug}.md", header + df.to_markdown(index=False) + "\n")
    return csv, md
