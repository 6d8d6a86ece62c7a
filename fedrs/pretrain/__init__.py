"""Pretraining of the offline CLIP backbones (``fedrs-rsclip-s``, ``fedrs-rsclip-tiny``).

No pretrained CLIP weights exist on an offline machine, so fedrs trains small CLIPs from scratch
on RSICD captions; ``fedrs.backbone`` then loads the checkpoint like any open_clip weights.

```python
from fedrs.pretrain import ensure_offline_backbone, load_recipe, pretrain
ckpt = ensure_offline_backbone("fedrs-rsclip-tiny")   # or: fedrs backbone pretrain --if-missing
card = pretrain(load_recipe("fedrs-rsclip-tiny", overrides={"epochs": 1}), out_dir="/tmp/bb")
```

- ``training``: the recipe (``PretrainConfig``, shipped in ``recipes/<model>.yaml``), data,
  augmentation, the training loop with resume, and the model card;
- ``build``: where a checkpoint goes and whether to build it (:func:`ensure_offline_backbone`).

This package sits above ``fedrs.backbone`` (the factory loads what it writes) and
``fedrs.evaluate`` (the model card's zero-shot rows); neither imports it.
"""

from .build import build_offline_backbone, ensure_offline_backbone
from .training import RECIPE_DIR, PretrainConfig, augment, load_recipe, pretrain, write_model_card

__all__ = [
    "ensure_offline_backbone", "build_offline_backbone", "PretrainConfig", "load_recipe",
    "pretrain", "augment", "write_model_card", "RECIPE_DIR",
]
