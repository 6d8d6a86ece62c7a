"""The method registry: one entry per method, one file per method.

Adding a method (a baseline of issue #4, the retrieval adapter of issue #6) means writing one
module with a :class:`~fedrs.methods.base.Method` subclass and its config dataclass, and adding
one line to :data:`METHODS`.

```python
from fedrs.methods import create_method, method_config
cfg = method_config({"name": "fedrsclip", "n_ctx": 8})
method = create_method(cfg, backbone, dataset.prompt_names, seed=0)
method.upload_names        # ('text_shared',)
```
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fedrs.config import ConfigError, from_dict
from fedrs.methods.base import Batch, Method, MethodConfig
from fedrs.methods.fedrsclip import FedRSCLIP, FedRSCLIPConfig
from fedrs.methods.pe_rsitr import PERSITR

#: name -> Method subclass
METHODS: dict[str, type[Method]] = {
    FedRSCLIP.name: FedRSCLIP,
    PERSITR.name: PERSITR,
}


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


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
    "METHODS", "Method", "MethodConfig", "Batch", "FedRSCLIP", "FedRSCLIPConfig",
    "get_method_class", "method_config", "create_method",
]
