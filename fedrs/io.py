"""Atomic file writes: a reader never sees a half-written result, checkpoint or manifest.

Files are created with the user's umask like any ``open(path, "w")`` (``tempfile.mkstemp``
would make them private, 0600, so collaborators on a shared volume could not read results), and
JSON is always strict: a NaN or infinity is refused, naming where it sits, instead of writing a
bare ``NaN`` that JSON readers reject.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fedrs.errors import FedrsError


class NonFiniteJSONError(FedrsError, ValueError):
    """Data to be written as JSON holds a NaN or infinity (JSON has no such numbers)."""


def _create_temp(path: Path) -> Path:
    """An empty new file next to ``path``, with the permissions ``open(..., "w")`` would give."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # mode 0o666 minus the umask, as for any new file; O_EXCL: never an existing file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _is_non_finite(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
            and not math.isfinite(value))


def _default(value: Any) -> str:
    """Non-JSON values as their ``str`` (numpy float32, paths, ...), but never a NaN in disguise."""
    if _is_non_finite(value):
        raise ValueError(f"non-finite number {value!r}")
    return str(value)


def _non_finite_place(obj: Any, place: str = "", _open: set[int] | None = None) -> tuple[str, Any] | None:
    """``("rounds[2].loss", nan)``: where the first NaN/infinity sits in ``obj``, or None."""
    if _is_non_finite(obj):
        return place or "<top level>", obj
    _open = set() if _open is None else _open
    if id(obj) in _open:  # a circular reference: json reports it itself
        return None
    if isinstance(obj, dict):
        items = ((f"{place}.{k}" if place else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{place}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    _open.add(id(obj))
    for where, value in items:
        found = _non_finite_place(value, where, _open)
        if found:
            return found
    _open.discard(id(obj))
    return None


def json_text(obj: Any, indent: int | None = 2, source: str = "JSON") -> str:
    """Strict JSON text of ``obj`` (non-JSON values written as their ``str``), without newline.

    Raises :class:`NonFiniteJSONError` naming ``source`` and the key path of the first NaN or
    infinity (``metrics.json: rounds[3].global_accuracy is nan``).
    """
    try:
        return json.dumps(obj, indent=indent, sort_keys=False, default=_default, allow_nan=False)
    except ValueError:
        found = _non_finite_place(obj)
        if found is None:
            raise  # another problem (e.g. a circular reference): not ours to reword
        where, value = found
        raise NonFiniteJSONError(
            f"{source}: {where} is {value!r}, which JSON cannot hold: nothing was written "
            f"(a NaN or infinity usually means a diverged computation: check the learning rate "
            f"and the inputs)"
        ) from None


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`json_text`) atomically; nothing is written on error."""
    return write_text_atomic(path, json_text(obj, indent=indent, source=str(path)) + "\n")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json_object(path: str | os.PathLike, error: type[Exception] = FedrsError,
                     fix: str = "re-run that run or delete its folder") -> dict:
    """The JSON object in ``path``, read as strictly as :func:`json_text` writes: ``NaN`` and
    ``Infinity`` are refused, like malformed text, a missing or unreadable file, or a value
    that is not an object. Each raises ``error`` with ``"<path>: <problem>; <fix>"``, so every
    reader of result files (study report, retrieval report, PETL rows) words damage the same way.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN are ValueErrors
        raise error(f"{path}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object; {fix}")
    return data


def read_yaml_mapping(path: str | os.PathLike, error: type[Exception] = FedrsError,
                      fix: str = "re-run that run or delete its folder") -> dict:
    """The YAML mapping in ``path`` (an empty file or a non-mapping gives ``{}``); a missing,
    unreadable or malformed file raises ``error`` with ``"<path>: <problem>; <fix>"``."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path}: not readable YAML ({reason}); {fix}") from None
    return data if isinstance(data, dict) else {}


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically and byte-reproducibly.

    Saving to a named file embeds that (temporary, random) name in the archive, so equal tensors
    would hash differently; serialising through a buffer gives identical bytes for identical
    content, which keeps checkpoint fingerprints (cache keys, result labels) stable.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)
