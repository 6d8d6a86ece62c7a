"""One factory for every CLIP backbone fedrs uses, all through open_clip.

``create_backbone(model, pretrained)`` accepts

* any open_clip model name with a pretrained tag: ``("ViT-B-16", "openai")``,
  ``("ViT-B-32", "laion2b_s34b_b79k")`` (downloaded by open_clip when the hub is reachable, or
  taken from the local Hugging Face cache);
* any open_clip model name with a local checkpoint file in open_clip format:
  ``("ViT-B-32", "/weights/RemoteCLIP-ViT-B-32.pt")``, ``("ViT-B-32", "RS5M_ViT-B-32.pt")``;
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

import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

from fedrs.errors import BackboneError
from fedrs.paths import models_root

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
            for name in ([filename] if filename else []) + ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
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


def create_backbone(
    model: str = OFFLINE_DEFAULT,
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    cache: bool = True,
) -> Backbone:
    """Create (or fetch from the per-process cache) a frozen open_clip backbone.

    Args:
        model: open_clip model name (``"ViT-B-16"``) or a fedrs offline model (``"fedrs-rsclip-s"``).
        pretrained: hub tag, checkpoint file, ``"random"``, or ``None`` (offline models: the local
            checkpoint from ``fedrs backbone pretrain``; open_clip models: random init is refused,
            pass ``"random"`` explicitly).
        device: torch device for the frozen model.
    """
    device = torch.device(device)
    pretrained = str(pretrained) if pretrained is not None else None
    key = (model, pretrained, str(device))
    if cache and key in _CACHE:
        return _CACHE[key]

    known_models = set(open_clip.list_models())
    if model not in known_models:
        raise BackboneError(
            f"unknown backbone model {model!r}: use an open_clip model name (e.g. ViT-B-32, ViT-B-16; "
            f"see `fedrs backbone list`) or the offline default {OFFLINE_DEFAULT!r}"
        )

    checkpoint: Path | None = None
    overrides: dict[str, Any] = {}
    open_clip_pretrained: str | None
    if pretrained == RANDOM:
        open_clip_pretrained = None
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
        open_clip_pretrained = str(checkpoint)
    elif os.path.isfile(pretrained) or os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        checkpoint = Path(pretrained).expanduser().resolve()
        if not checkpoint.is_file():
            raise BackboneError(f"checkpoint file not found: {checkpoint}; check the path")
        open_clip_pretrained = str(checkpoint)
    else:
        if model in OFFLINE_MODELS:
            raise BackboneError(
                f"{model!r} has no hub weights; use pretrained=None (its local checkpoint), a file, or 'random'"
            )
        open_clip_pretrained, overrides = _resolve_hub_tag(model, pretrained)
        if os.path.isfile(open_clip_pretrained):
            checkpoint = Path(open_clip_pretrained)

    kwargs = {}
    if overrides.get("mean"):
        kwargs["image_mean"] = overrides["mean"]
    if overrides.get("std"):
        kwargs["image_std"] = overrides["std"]
    try:
        with torch.random.fork_rng(devices=[]):  # same random init in every process
            torch.manual_seed(0)
            clip_model, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=open_clip_pretrained, device=device, **kwargs
            )
    except (RuntimeError, AssertionError, ValueError, KeyError) as exc:
        # open_clip signals shape mismatches with RuntimeError (load_state_dict) or AssertionError
        # (positional-embedding resizing); both mean "wrong file for this architecture"
        if "Failed to download" in str(exc):
            raise BackboneError(f"could not download {pretrained!r} for {model!r}: {exc}; "
                                f"{_offline_alternatives(model)}") from exc
        if checkpoint is not None:
            raise BackboneError(
                f"checkpoint {checkpoint} does not fit open_clip model {model!r} ({exc}); "
                f"check that the file was trained with this architecture"
            ) from exc
        raise
    clip_model.eval()
    for param in clip_model.parameters():
        param.requires_grad_(False)

    backbone = Backbone(
        model_name=model,
        pretrained=pretrained if pretrained is not None else (str(checkpoint) if checkpoint else None),
        model=clip_model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(model),
        checkpoint=checkpoint,
        fingerprint=file_fingerprint(checkpoint) if checkpoint is not None else RANDOM,
        device=device,
    )
    if pretrained is None:
        backbone.pretrained = None
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
