"""PE-RSITR: parameter-efficient CLIP transfer to remote-sensing image-text retrieval (issues #6, #14).

The whole retrieval wing lives here: ``config`` (typed sections, the validated learning rates),
``data`` (caption sets as tensors, the validation split, client shards), ``adapters`` (MRS-Adapter,
bottleneck adapter), ``model`` (the dual encoder with pluggable PETL parts), ``variants`` (the PETL
harness), ``train`` (centralised training and R@K evaluation under every tie convention),
``method`` (the ``pe-rsitr`` method for the federated engine), ``pipeline`` (federated training
and the retrieval pipeline of ``fedrs run``), ``selection`` (learning rates chosen on the
validation split of the training images), ``compare`` (the PETL rows and the federated rows, one
seed) and ``petl`` (the PETL table over seeds, resumable, with paired intervals).

```python
from fedrs.backbone.factory import create_backbone
from fedrs.retrieval import RetrievalConfig, RetrievalSet, build_variant, evaluate_by_ties, train_epochs
from fedrs.retrieval.config import DEFAULT_LR
from fedrs.evaluate.retrieval import tie_row
backbone = create_backbone()                                   # offline fedrs-rsclip-s
train, val = RetrievalSet.load("UCM-Captions", "train+val", backbone).split_validation(0.2, seed=0)
test = RetrievalSet.load("UCM-Captions", "test", backbone)
model, loss = build_variant(backbone, RetrievalConfig(variant="mrs-adapter-hmmc"))
stats = train_epochs(model, loss, train, epochs=5, batch_size=64, lr=DEFAULT_LR["mrs-adapter-hmmc"],
                     val=val)                                  # val mR per epoch, never test
print(model.trainable_parameters(), test.describe(), tie_row(evaluate_by_ties(model, test)))  # final epoch
```

Federated: :func:`federated_retrieval` (``fedrs.retrieval.pipeline``) or ``fedrs run`` with a
``method: {name: pe-rsitr}`` configuration (``params/offline/pe_rsitr_ucm_fed.yaml``). The PETL
table over seeds: ``fedrs retrieval petl params/retrieval/petl_ucm.yaml`` (:mod:`fedrs.retrieval.petl`);
one seed with the federated rows and timings: ``benchmarks/bench_retrieval.py``.
"""

from fedrs.retrieval.adapters import BottleneckAdapter, MRSAdapter
from fedrs.retrieval.config import (
    VARIANTS,
    AdapterConfig,
    LossConfig,
    PromptConfig,
    RetrievalConfig,
    RetrievalTrainConfig,
    ValidationConfig,
)
from fedrs.retrieval.data import RetrievalSet, split_clients, split_disjoint, zeroshot_note
from fedrs.retrieval.method import PERSITR, PERSITRConfig
from fedrs.retrieval.model import ProjectionHeads, RetrievalModel, TextPrompt, VisualPrompt
from fedrs.retrieval.pipeline import FederatedRetrievalResult, concat_pool, federated_retrieval, run_retrieval
from fedrs.retrieval.selection import select_lr
from fedrs.retrieval.train import encode_set, evaluate, evaluate_by_ties, search_images, train_epochs
from fedrs.retrieval.variants import build_variant

__all__ = [
    "VARIANTS", "AdapterConfig", "LossConfig", "PromptConfig", "RetrievalConfig", "RetrievalTrainConfig",
    "ValidationConfig", "RetrievalSet", "split_clients", "split_disjoint", "zeroshot_note",
    "RetrievalModel", "TextPrompt", "VisualPrompt", "ProjectionHeads",
    "encode_set", "evaluate", "evaluate_by_ties", "search_images", "train_epochs", "build_variant", "select_lr",
    "MRSAdapter", "BottleneckAdapter", "PERSITRConfig", "PERSITR",
    "federated_retrieval", "FederatedRetrievalResult", "concat_pool", "run_retrieval",
]
