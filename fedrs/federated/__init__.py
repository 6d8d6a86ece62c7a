"""Federated learning: engine-agnostic client update and aggregation, and the in-process engine.

``client.py`` and ``server.py`` take and return plain tensor dicts so that a Flower
ClientApp/ServerApp can call exactly the same functions; ``engine.py`` is the round loop that
simulates the clients in one process (sampling, rounds, checkpoint/resume). Running a YAML into a
run folder is one layer up, in :mod:`fedrs.experiment`:

```python
from fedrs.experiment import run_experiment
from fedrs.runs import load_run_config
metrics = run_experiment(load_run_config("params/offline/fedrsclip_ucmerced.yaml"), "results/runs/x")
```
"""

from fedrs.federated.client import (
    ClientData,
    ClientResult,
    LocalTrainConfig,
    client_evaluate,
    client_update,
    initial_client_state,
)
from fedrs.federated.engine import FederatedEngine
from fedrs.federated.server import aggregate, payload_size

__all__ = [
    "ClientData", "ClientResult", "LocalTrainConfig", "client_update", "client_evaluate",
    "initial_client_state", "aggregate", "payload_size", "FederatedEngine",
]
