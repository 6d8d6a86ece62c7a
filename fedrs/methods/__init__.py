"""The method registry: one entry per method, one file per method.

Adding a method (a baseline of issue #4, the retrieval adapter of issue #6) means writing one
module with a :class:`~fedrs.methods.base.Method` subclass and its config dataclass, and adding
one line to :data:`METHODS` (``name: "module:Class"``, imported only when the method is used).
A method whose task is not classification names its own experiment runner in
:data:`TASK_RUNNERS` (``fedrs run`` dispatches on ``Method.task``).

```python
from fedrs.methods import create_method, method_config
cfg = method_config({"name": "fedrsclip", "n_ctx": 8})
method = create_method(cfg, backbone, dataset.prompt_names, seed=0)
method.upload_names        # ('text_shared',)
```

What may leave a client is the method's fixed rule (``Method.SHAREABLE``), checked independently
of ``upload_names`` (:meth:`~fedrs.methods.base.Method.may_share`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

from fedrs.config import ConfigError, from_dict
from fedrs.methods.base import Batch, ClientData, Method, MethodConfig

#: method name -> "module:Method subclass" (imported only when the method is used)
METHODS: dict[str, str] = {
    "fedrsclip": "fedrs.methods.fedrsclip:FedRSCLIP",
    "fedrsclip-local": "fedrs.methods.fedrsclip:FedRSCLIPLocal",
    "pe-rsitr": "fedrs.retrieval.method:PERSITR",
    "zeroshot": "fedrs.methods.zeroshot:ZeroShot",
    "local": "fedrs.methods.local:LocalOnly",
    "promptfl": "fedrs.methods.promptfl:PromptFL",
    "fedpgp": "fedrs.methods.fedpgp:FedPGP",
    "fedotp": "fedrs.methods.fedotp:FedOTP",
    "centralised": "fedrs.methods.centralised:Centralised",
}

#: Method.task -> "module:function" running one configuration into a run folder
#: (``fn(cfg, out_dir, resume=, progress=, force=, on_round=) -> metrics``); classification runs
#: use :func:`fedrs.federated.engine.run_experiment` itself.
TASK_RUNNERS: dict[str, str] = {
    "retrieval": "fedrs.retrieval.pipeline:run_retrieval",
}


def _resolve(path: str) -> Any:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; choose one of {sorted(METHODS)}")
    return _resolve(METHODS[name])


def has_global_model(name: str) -> bool:
    """Whether method ``name``'s server holds a trained model (:attr:`Method.has_global_model`);
    names not in the registry (results of another version or package) count as having one."""
    return bool(get_method_class(name).has_global_model) if name in METHODS else True


def task_runner(task: str) -> Callable[..., dict] | None:
    """The experiment runner of a non-classification task (``None`` for classification)."""
    return _resolve(TASK_RUNNERS[task]) if task in TASK_RUNNERS else None


def method_config(data: Mapping[str, Any] | str | MethodConfig, source: str = "method") -> MethodConfig:
    """The method's config dataclass from a ``method:`` mapping (or just its name)."""
    if isinstance(data, MethodConfig):
        return data
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{source}: needs a 'name' (one of {sorted(METHODS)}), got {data!r}")
    return from_dict(get_method_class(data["name"]).config_class, data, source)


def create_method(cfg: MethodConfig | Mapping[str, Any], backbone, classnames: Sequence[str],
                  seed: int = 0) -> Method:
    """Build the registered method over a frozen backbone for the given (readable) class names."""
    cfg = method_config(cfg)
    return get_method_class(cfg.name)(cfg, backbone, classnames, seed=seed)


__all__ = [
    "METHODS", "TASK_RUNNERS", "Method", "MethodConfig", "Batch", "ClientData", "get_method_class", "task_runner",
    "method_config", "create_method",
]
