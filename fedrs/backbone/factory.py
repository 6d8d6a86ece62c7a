"""One factory for every CLIP backbone fedrs uses, all through open_clip.

``create_backbone(model, pretrained)`` accepts

* any open_clip model name with a pretrained tag: ``("ViT-B-16", "openai")``,
  ``("ViT-B-32", "laion2b_s34b_b79k")`` (downloaded by open_clip when the hub is reachable, or
  taken from the local Hugging Face cache). The activation follows the tag: ``("ViT-B-16",
  "openai")`` builds ``ViT-B-16-quickgelu`` (open_clip itself only warns about the mismatch);
* any open_clip model name with a local checkpoint file: a plain open_clip state dict, an
  open_clip training checkpoint (``{'state_dict': {'module.<key>': ...}}``) or an ITRA training
  checkpoint (RemoteCLIP's and GeoRSCLIP's trainer), see ``checkpoints.LAYOUTS``. A file the
  checkpoint registry (:mod:`fedrs.backbone.checkpoints`) recognises, by name or sha256, is built
  with its registered recipe: ``("ViT-B-32", "RemoteCLIP-ViT-B-32.pt")`` builds
  ``ViT-B-32-quickgelu``, because RemoteCLIP was trained with QuickGELU and a GELU build gives
  silently wrong features (open_clip issue #771). Every file is loaded strictly: a file that
  lacks weights of the architecture, or carries weights it does not have, is an error unless the
  caller passes ``strict=False`` (or the registry lists the keys as ones the file may miss);
* the offline default ``"fedrs-rsclip-s"`` (and the test-sized ``"fedrs-rsclip-tiny"``): small
  CLIPs pretrained by ``fedrs backbone pretrain`` on RSICD captions. Their configs are registered
  with open_clip (``model_configs/``) and their weights are open_clip checkpoints, so they load
  through exactly the same ``open_clip.create_model_and_transforms`` call as real weights.
  ``pretrained=None`` means "the locally built checkpoint" for them;
* ``pretrained="random"``: the architecture without weights (parameter counts, tests), initialised
  from a fixed seed so that every process (Flower clients, sweep jobs, the feature cache) builds
  the same one.

The returned backbone is frozen (eval mode, ``requires_grad=False``) and cached, so every client,
method and notebook cell in a process shares one instance.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import pickle
import socket
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

from fedrs.backbone.checkpoints import (
    LAYOUTS,
    CheckpointEntry,
    KeyLayout,
    base_architecture,
    detect_layout,
    entry_for_hub_tag,
    identify_checkpoint,
)
from fedrs.errors import BackboneError
from fedrs.paths import models_root

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

#: the offline default backbone and its test-sized sibling (configs in model_configs/)
OFFLINE_DEFAULT = "fedrs-rsclip-s"
OFFLINE_MODELS = tuple(sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")))
CHECKPOINT_NAME = "open_clip_model.pt"
RANDOM = "random"


@dataclass
class Backbone:
    """A frozen open_clip CLIP plus what is needed to feed it.

    ``model.encode_image(x)`` maps ``[B, 3, image_size, image_size]`` to ``[B, embed_dim]``;
    ``model.encode_text(tokens)`` maps ``[B, context_length]`` token ids to ``[B, embed_dim]``.
    """

    model_name: str
    pretrained: str | None
    model: torch.nn.Module
    preprocess: Callable  # PIL image -> [3, H, W] float tensor (open_clip eval transform)
    tokenizer: Callable  # list[str] -> [N, context_length] long tensor
    checkpoint: Path | None = None
    fingerprint: str = "random"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: key of the checkpoint-registry entry whose recipe built these weights (file or hub tag)
    checkpoint_entry: str | None = None
    #: whether the file's sha256 is the registry's published one (None: no checksum registered)
    sha256_verified: bool | None = None

    @property
    def label(self) -> str:
        """Human-readable name used to label every result (``model/weights``)."""
        if self.pretrained == RANDOM:
            return f"{self.model_name}/random-init"
        if self.checkpoint is not None and (self.pretrained is None or self.checkpoint.name == CHECKPOINT_NAME):
            # a build of `fedrs backbone pretrain`, from its default location or elsewhere: every such
            # file is called open_clip_model.pt, so the weights' fingerprint says which build it is
            return f"{self.model_name}/offline-{self.fingerprint[:8]}"
        if self.checkpoint is not None and self.pretrained and os.path.isfile(str(self.pretrained)):
            if self.checkpoint_entry and self.sha256_verified is not False:
                # registered weights: the entry names them better than a generic epoch_20.pt
                return f"{self.model_name}/{self.checkpoint_entry}"
            return f"{self.model_name}/{Path(self.pretrained).stem}"
        return f"{self.model_name}/{self.pretrained}"

    @property
    def slug(self) -> str:
        """File-name-safe form of :attr:`label` (results/zero_shot/<slug>.csv)."""
        return self.label.replace("/", "__").replace(" ", "_")

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(
            self.model.visual.output_dim
        )

    @property
    def text_width(self) -> int:
        return int(self.model.token_embedding.weight.shape[1])

    @property
    def vision_width(self) -> int:
        return int(self.model.visual.conv1.out_channels)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        return dict(getattr(self.model.visual, "preprocess_cfg", {}))


_CACHE: dict[tuple, Backbone] = {}


def offline_checkpoint_path(model_name: str = OFFLINE_DEFAULT) -> Path:
    """Where ``fedrs backbone pretrain`` writes (and the factory finds) an offline checkpoint."""
    return models_root() / model_name / CHECKPOINT_NAME


def list_backbones() -> dict[str, list[str]]:
    """open_clip architectures (with their known pretrained tags) plus fedrs's offline models."""
    out = {name: open_clip.list_pretrained_tags_by_model(name) for name in open_clip.list_models()}
    for name in OFFLINE_MODELS:
        out[name] = [f"local: {offline_checkpoint_path(name)}"]
    return out


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a checkpoint file (hex); keys feature caches and labels results."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers; ``FEDRS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` force 'no'."""
    if os.environ.get("FEDRS_OFFLINE", "0") not in ("", "0") or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_alternatives(model_name: str) -> str:
    return (
        f"pass a local open_clip checkpoint instead (pretrained='/path/to/{model_name}.pt'; RemoteCLIP "
        f"and GeoRSCLIP .pt files work as they are), or use the offline default backbone "
        f"'{OFFLINE_DEFAULT}' (built on this machine by `fedrs backbone pretrain`)"
    )


def _resolve_hub_tag(model_name: str, tag: str) -> tuple[str, dict[str, Any]]:
    """Return (pretrained argument for open_clip, preprocess overrides) for a hub tag.

    A tag whose weights are already in the local Hugging Face cache is resolved to that file, so
    it works without network; otherwise the hub must be reachable, else we fail fast instead of
    letting the download retry for minutes.
    """
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise BackboneError(
            f"unknown pretrained tag {tag!r} for open_clip model {model_name!r}; known tags: {known}, "
            f"or give a checkpoint file path"
        )
    overrides = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo_id, filename = os.path.split(hub)
            for name in (([filename] if filename else [])
                         + ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
                cached = try_to_load_from_cache(repo_id, name)
                if isinstance(cached, str) and os.path.isfile(cached):
                    return cached, overrides
        except Exception:  # noqa: BLE001 - cache probing must never be fatal
            pass
    if not hub_reachable():
        raise BackboneError(
            f"pretrained weights {tag!r} for {model_name!r} are not on this machine and the model hub "
            f"is unreachable (offline); {_offline_alternatives(model_name)}"
        )
    return tag, overrides


def hub_tag_architecture(model_name: str, tag: str) -> str:
    """The open_clip model name whose activation matches the weights of ``(model_name, tag)``.

    open_clip marks the tags trained with QuickGELU (every ``openai`` tag, ``laion400m_e31/e32``,
    MetaCLIP) in their pretrained config; building them under a GELU config only warns and gives
    wrong features (open_clip issue #771), so ``("ViT-B-32", "openai")`` becomes
    ``ViT-B-32-quickgelu``. Unknown tags are returned unchanged (the caller reports them).
    """
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        return model_name
    wants_quick = bool(cfg.get("quick_gelu", False))
    has_quick = bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))
    if wants_quick == has_quick:
        return model_name
    candidate = f"{base_architecture(model_name)}-quickgelu" if wants_quick else base_architecture(model_name)
    if candidate in open_clip.list_models() and tag in open_clip.list_pretrained_tags_by_model(candidate):
        return candidate
    raise BackboneError(
        f"pretrained tag {tag!r} was trained with {'QuickGELU' if wants_quick else 'GELU'} but open_clip model "
        f"{model_name!r} uses {'QuickGELU' if has_quick else 'GELU'} and has no variant that matches; "
        f"choose a model listed for this tag by `fedrs backbone list --all`"
    )


#: entries of a TorchScript state dict that are no weights: OpenAI's scalars (open_clip drops them
#: too), and attention masks, which open_clip rebuilds (a non-persistent buffer that scripting exports)
_JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_WRAPPERS = tuple(dict.fromkeys(w for layout in LAYOUTS for w in layout.wrappers))
_STRIP_PREFIXES = tuple(dict.fromkeys(layout.strip_prefix for layout in LAYOUTS if layout.strip_prefix))


def _is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive: a zip whose record holds a ``code/`` folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], KeyLayout]:
    """A checkpoint file's weights as an open_clip state dict, and the layout they were saved in.

    Reads ``.safetensors``, ``torch.save`` files (tensors only: ``weights_only=True``, so a file
    cannot run code) and OpenAI's TorchScript archives; unwraps training checkpoints
    (``{'state_dict': ...}``), strips the ``module.`` prefix of DistributedDataParallel and renames
    the ITRA layout's ``text_backbone.``/``image_backbone.`` keys (``checkpoints.LAYOUTS``).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    elif _is_torchscript(path):
        # OpenAI's original CLIP files are TorchScript archives (TorchScript code, no pickled Python)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            obj = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        for key in _JIT_EXTRA_KEYS:
            obj.pop(key, None)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Unsupported global" not in str(exc):
                # not a refused global but bytes that are no pickle at all
                raise BackboneError(f"{path} is damaged or not a checkpoint (it cannot be unpickled): "
                                    f"download or copy it again") from exc
            raise BackboneError(
                f"{path} holds pickled Python objects besides tensors, which fedrs does not unpickle (a "
                f"checkpoint must not run code); if you trust the file, load it once in a session you "
                f"trust and torch.save only its state dict of tensors"
            ) from exc
        except (RuntimeError, EOFError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackboneError(f"{path} is damaged or not a checkpoint ({first}): download or copy it again") from exc
    wrapped = False
    while isinstance(obj, dict):
        inner = next((obj[w] for w in _WRAPPERS if isinstance(obj.get(w), dict)), None)
        if inner is None:
            break
        obj, wrapped = inner, True
    tensors = ({k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
               if isinstance(obj, dict) else {})
    if not tensors:
        raise BackboneError(f"{path} holds no state dict (no name -> tensor mapping found); "
                            f"give an open_clip checkpoint file")
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            wrapped = True
    layout = detect_layout(tensors, wrapped)
    for old, new in layout.renames:
        tensors = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in tensors.items()}
    return tensors, layout


def _key_summary(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, strict: bool = True,
                 may_miss: tuple[str, ...] = (), source: str = "checkpoint", model_name: str = "") -> None:
    """Load ``state_dict`` into an open_clip ``model``, reporting key mismatches ourselves.

    The same adaptations as open_clip's ``load_checkpoint`` (third-party conversions, scalar
    ``logit_scale``, positional-embedding resizing) are applied; then any weight the file lacks
    (other than the ``may_miss`` glob patterns) or carries beyond the model is a
    :class:`BackboneError` unless ``strict`` is false, when it is logged and the model keeps its
    (seeded) initial values there. Shape mismatches are always an error.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    name = model_name or type(model).__name__
    sd = convert_state_dict(model, dict(state_dict))
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    for scalar in ("logit_scale", "logit_bias"):
        target = getattr(model, scalar, None)
        if scalar in sd and isinstance(target, torch.Tensor) and sd[scalar].ndim != target.ndim:
            sd[scalar] = sd[scalar].reshape(target.shape)
    if ("text.transformer.embeddings.position_ids" in sd
            and not hasattr(model, "text.transformer.embeddings.position_ids")):
        del sd["text.transformer.embeddings.position_ids"]
    try:
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
        result = model.load_state_dict(sd, strict=False)
    except (RuntimeError, AssertionError, ValueError, KeyError) as exc:
        # size mismatches (load_state_dict) or grid resizing failures: the wrong file for this architecture
        raise BackboneError(f"{source} does not fit open_clip model {name!r} ({exc}); "
                            f"check that the file was trained with this architecture") from exc
    missing = [k for k in result.missing_keys if not any(fnmatch.fnmatchcase(k, p) for p in may_miss)]
    unexpected = list(result.unexpected_keys)
    if not (missing or unexpected):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) of the model are not in the file ({_key_summary(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} weight(s) in the file are not in the model ({_key_summary(unexpected)})")
    problem = f"{source} loads only partially into open_clip model {name!r}: {'; '.join(parts)}"
    if strict:
        raise BackboneError(
            f"{problem}. Check that the file was saved from this architecture; if partial loading is "
            f"intended (missing weights keep their random initialisation), load with strict=False "
            f"(run config: backbone.strict: false)"
        )
    logger.warning("%s; loaded anyway (strict=False)", problem)


class _DropRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded for model '<model>' ... initialized randomly"."""

    def __init__(self, model: str | None = None):
        super().__init__()
        self.needle = "No pretrained weights loaded for model" + (f" '{model}'" if model else "")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.needle)


@contextmanager
def expected_random_init(model: str | None = None):
    """Silence open_clip's warning that ``model`` (any model: ``None``) was "initialized randomly"
    where fedrs asks for random weights on purpose: ``pretrained: random``, a checkpoint file
    loaded right after the build, pretraining from scratch. Any other record passes.

    open_clip logs it through the root logger with ``logging.warning``, which would also install
    a stderr handler on the root logger (``basicConfig``) if it has none, so that every later
    warning of any library printed ``WARNING:root:...``: a temporary ``NullHandler`` prevents that.
    """
    root = logging.getLogger()
    drop = _DropRandomInitWarning(model)
    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(drop)
    if placeholder:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if placeholder:
            root.removeHandler(placeholder)


#: what ``backbone.device`` accepts: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda``, ``cuda:<i>``
DEVICE_CHOICES = "auto, cpu, cuda or cuda:<index>"


def check_device_name(spec: object) -> str:
    """``spec`` as a device name (lower-cased) if it has the form of one (``auto``, ``cpu``,
    ``cuda``, ``cuda:<i>``), whether or not this machine has that device.

    Raises:
        BackboneError: anything else (``gpu``, ``cuda:x``, a number).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise BackboneError(f"backbone device must be a string ({DEVICE_CHOICES}), got {spec!r}")
    text = spec.strip().lower()
    kind, sep, index = text.partition(":")
    if text not in ("auto", "cpu") and not (kind == "cuda" and (not sep or index.isdigit())):
        raise BackboneError(f"unknown backbone device {spec!r}: use {DEVICE_CHOICES}")
    return text


def resolve_device(spec: str | torch.device = "cpu") -> torch.device:
    """The torch device a ``backbone.device`` setting names: ``auto`` is ``cuda`` when a GPU is
    available, else ``cpu``; ``cuda``/``cuda:<i>`` must exist on this machine.

    Raises:
        BackboneError: a string that names no such device, or a GPU this machine lacks.
    """
    text = check_device_name(spec)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackboneError(f"backbone device {spec!r} asks for a GPU but torch sees none on this machine "
                                f"(torch {torch.__version__}); use device 'cpu' or 'auto'")
        if device.index is not None and device.index >= count:
            raise BackboneError(f"backbone device {spec!r} does not exist: this machine has {count} GPU(s) "
                                f"(cuda:0..cuda:{count - 1})")
    return device


def _build(model_name: str, device: torch.device, pretrained: str | None = None,
           **kwargs) -> tuple[torch.nn.Module, Callable]:
    """open_clip model and eval transform, initialised from a fixed seed (same in every process)."""
    # random weights are expected: "random" itself, or a file loaded right after (hub tags load
    # their weights inside open_clip, which then does not warn)
    with torch.random.fork_rng(devices=[]), expected_random_init(model_name):
        torch.manual_seed(0)
        clip_model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device, **kwargs
        )
    return clip_model, preprocess


def _recipe_for_file(model: str, checkpoint: Path, fingerprint: str) -> tuple[str, CheckpointEntry | None, bool | None]:
    """(architecture to build, registry entry, sha256 verified) for a checkpoint file."""
    entry = identify_checkpoint(checkpoint, fingerprint)
    if entry is None:
        return model, None, None
    if base_architecture(model) != entry.base_architecture:
        raise BackboneError(
            f"{checkpoint.name} is the registered checkpoint {entry.title!r} ({entry.key}), an open_clip "
            f"{entry.architecture!r}, not {model!r}: pass model {entry.base_architecture!r} (fedrs applies "
            f"its recipe, see `fedrs backbone list --all`)"
        )
    verified = (fingerprint in entry.sha256) if entry.sha256 else None
    if verified is False:
        logger.warning("%s is named like the published %s but its sha256 (%s) is not the published one; "
                       "applying the registered recipe anyway", checkpoint.name, entry.title, fingerprint[:12])
    if model != entry.architecture:
        logger.info("%s is %s, trained with %s: building open_clip %r instead of %r",
                    checkpoint.name, entry.title, entry.activation, entry.architecture, model)
    return entry.architecture, entry, verified


def create_backbone(
    model: str = OFFLINE_DEFAULT,
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    cache: bool = True,
    strict: bool = True,
) -> Backbone:
    """Create (or fetch from the per-process cache) a frozen open_clip backbone.

    Args:
        model: open_clip model name (``"ViT-B-16"``) or a fedrs offline model (``"fedrs-rsclip-s"``).
            For a registered checkpoint or tag the activation variant (``-quickgelu`` or not) is
            chosen by the recipe, so ``"ViT-B-32"`` and ``"ViT-B-32-quickgelu"`` are equivalent.
        pretrained: hub tag, checkpoint file, ``"random"``, or ``None`` (offline models: the local
            checkpoint from ``fedrs backbone pretrain``; open_clip models: random init is refused,
            pass ``"random"`` explicitly).
        device: where the frozen model lives: ``auto``, ``cpu``, ``cuda``, ``cuda:<i>`` or a
            ``torch.device`` (:func:`resolve_device`).
        strict: refuse a checkpoint file that lacks weights of the model or carries extra ones
            (``False``: load what matches, log the rest).
    """
    device = resolve_device(device)
    pretrained = str(pretrained) if pretrained is not None else None
    key = (model, pretrained, str(device), strict)
    if cache and key in _CACHE:
        return _CACHE[key]

    known_models = set(open_clip.list_models())
    if model not in known_models:
        raise BackboneError(
            f"unknown backbone model {model!r}: use an open_clip model name (e.g. ViT-B-32, ViT-B-16; "
            f"see `fedrs backbone list`) or the offline default {OFFLINE_DEFAULT!r}"
        )

    checkpoint: Path | None = None
    if pretrained == RANDOM:
        pass
    elif pretrained is None:
        if model not in OFFLINE_MODELS:
            raise BackboneError(
                f"no weights given for {model!r}: pass a pretrained tag such as 'openai', a checkpoint "
                f"file, or 'random' for an untrained architecture"
            )
        checkpoint = offline_checkpoint_path(model)
        if not checkpoint.is_file():
            raise BackboneError(
                f"the offline backbone {model!r} has not been built yet (expected {checkpoint}); run "
                f"`fedrs backbone pretrain --model {model}` (or `make backbone`)"
            )
    elif (os.path.isfile(pretrained) or os.sep in pretrained
          or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
        checkpoint = Path(pretrained).expanduser().resolve()
        if not checkpoint.is_file():
            raise BackboneError(f"checkpoint file not found: {checkpoint}; check the path")
    elif model in OFFLINE_MODELS:
        raise BackboneError(
            f"{model!r} has no hub weights; use pretrained=None (its local checkpoint), a file, or 'random'"
        )

    entry: CheckpointEntry | None = None
    verified: bool | None = None
    fingerprint = RANDOM
    architecture = model
    if pretrained == RANDOM:
        clip_model, preprocess = _build(model, device)
    elif checkpoint is not None:
        fingerprint = file_fingerprint(checkpoint)
        architecture, entry, verified = _recipe_for_file(model, checkpoint, fingerprint)
        state_dict, layout = read_checkpoint(checkpoint)
        if layout.renames or layout.strip_prefix:
            logger.info("%s: %s layout, keys normalised", checkpoint.name, layout.name)
        clip_model, preprocess = _build(architecture, device)
        load_weights(clip_model, state_dict, strict=strict, may_miss=entry.may_miss if entry else (),
                     source=f"checkpoint {checkpoint}", model_name=architecture)
        del state_dict
    else:
        architecture = hub_tag_architecture(model, pretrained)
        if architecture != model:
            logger.info("tag %r was trained with QuickGELU: building open_clip %r instead of %r",
                        pretrained, architecture, model)
        open_clip_pretrained, overrides = _resolve_hub_tag(architecture, pretrained)
        entry = entry_for_hub_tag(architecture, pretrained)
        kwargs = {}
        if overrides.get("mean"):
            kwargs["image_mean"] = overrides["mean"]
        if overrides.get("std"):
            kwargs["image_std"] = overrides["std"]
        try:
            clip_model, preprocess = _build(architecture, device, pretrained=open_clip_pretrained, **kwargs)
        except (RuntimeError, AssertionError, ValueError, KeyError) as exc:
            if "Failed to download" in str(exc):
                raise BackboneError(f"could not download {pretrained!r} for {model!r}: {exc}; "
                                    f"{_offline_alternatives(model)}") from exc
            if os.path.isfile(open_clip_pretrained):
                raise BackboneError(
                    f"cached weights {open_clip_pretrained} for tag {pretrained!r} do not fit open_clip model "
                    f"{architecture!r} ({exc})"
                ) from exc
            raise
        if os.path.isfile(open_clip_pretrained):
            checkpoint = Path(open_clip_pretrained)
            fingerprint = file_fingerprint(checkpoint)
    clip_model.eval()
    for param in clip_model.parameters():
        param.requires_grad_(False)

    backbone = Backbone(
        model_name=architecture,
        pretrained=pretrained,
        model=clip_model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(architecture),
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        device=device,
        checkpoint_entry=entry.key if entry else None,
        sha256_verified=verified,
    )
    if cache:
        _CACHE[key] = backbone
    return backbone


def clear_backbone_cache() -> None:
    """Forget cached backbones (tests, or after rebuilding an offline checkpoint)."""
    _CACHE.clear()


def assert_frozen(backbone: Backbone) -> None:
    """Raise if any backbone weight would receive gradients."""
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    if trainable:
        raise BackboneError(f"backbone is not frozen: {trainable[:5]} require gradients")
