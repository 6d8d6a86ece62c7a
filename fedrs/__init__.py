"""fedrs: federated vision-language learning on remote sensing imagery.

Pipeline, in the order of the package layout:
``data`` (import, scene and caption datasets, Fed-RSIC partitions) -> ``backbone`` (frozen
open_clip CLIP, offline pretraining, feature cache) -> ``prompts`` / ``adapters`` -> ``losses`` ->
``federated`` (client update, aggregation, engines) -> ``evaluate`` -> ``results``.
"""

__version__ = "0.1.0"
