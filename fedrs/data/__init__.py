"""Datasets: import into the data root, scene-classification datasets, caption sets.

Modules: ``registry`` (dataset specs, data-root contract), ``sources`` (archives and folders),
``layout`` (recognising a dataset by its layout), ``importing`` (validate, extract, install),
``workdirs`` (work folders, and those a killed import left), ``download``, ``ensure`` (the
study's datasets from local archives or by download), ``listing`` (what is imported), ``scenes``
and ``captions`` (loading), ``partition`` (federated client splits); ``commands`` is the
``fedrs data`` face.

```python
from fedrs.data import ensure_datasets, import_sources, load_scene_dataset, load_caption_set
ensure_datasets()                             # or: fedrs data import (local archives, else download)
import_sources(["../shared/data"])            # or: fedrs data import ../shared/data
import_sources(["My Scenes/"], name="MyScenes")  # your own folder of class sub-folders
ds = load_scene_dataset("UCMerced")           # ds.paths, ds.labels, ds.classnames, ds.prompt_names
hold = load_scene_dataset("AID-holdout")      # AID minus RSICD-train images (for evaluation)
cs = load_caption_set("UCM-Captions", split="test").with_images()
```
"""

from .captions import CaptionedImage, CaptionSet, load_caption_set
from .download import DownloadError, download_dataset
from .ensure import STUDY_DATASETS, ensure_datasets, missing_datasets
from .importing import ImportResult, import_sources
from .listing import list_datasets
from .registry import (
    AID_HOLDOUT, SPECS, CaptionSetSpec, SceneDatasetSpec, get_spec, known_names,
    readable_classname,
)
from .scenes import SceneDataset, load_scene_dataset

__all__ = [
    "load_scene_dataset", "load_caption_set", "list_datasets", "import_sources",
    "download_dataset", "ensure_datasets", "missing_datasets", "STUDY_DATASETS", "DownloadError", "SceneDataset", "CaptionSet", "CaptionedImage", "ImportResult",
    "SceneDatasetSpec", "CaptionSetSpec", "SPECS", "AID_HOLDOUT", "get_spec", "known_names",
    "readable_classname",
]
