"""What is imported in the data root, in numbers: :func:`list_datasets` (``fedrs data list``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedrs.errors import DataError

from .captions import load_caption_set
from .registry import (
    AID_HOLDOUT, SPECS, CaptionSetSpec, imported_names, read_manifest, writable_root,
)
from .scenes import load_scene_dataset


def _source_of(manifest: dict) -> str:
    src = manifest.get("source", {})
    if src.get("url"):
        return src["url"]
    if manifest.get("kind") == "captions" and src.get("type") == "folder" and src.get("member_root"):
        return str(Path(src["path"]) / src["member_root"])
    return src.get("path") or "?"


def _scene_entry(root: Path, manifest: dict) -> dict[str, Any]:
    return {
        "name": manifest["name"],
        "kind": "scene",
        "path": str(root / manifest["name"]),
        "source": _source_of(manifest),
        "source_sha256": manifest.get("source", {}).get("sha256"),
        "num_classes": len(manifest["classes"]),
        "num_images": manifest["num_images"],
        "classes": {c["name"]: c["count"] for c in manifest["classes"]},
        "image_sizes": manifest.get("image_sizes", {}),
        "subset": manifest.get("subset", False),
        "duplicates": len(manifest.get("duplicates", [])),
        "excluded": len(manifest.get("excluded", [])),
        "imported_at": manifest.get("imported_at"),
        "notes": manifest.get("notes", []),
        "origin": manifest.get("origin", "registry"),
        "variant_of": manifest.get("variant_of"),
    }


def _caption_entry(root: Path, manifest: dict) -> dict[str, Any]:
    name = manifest["name"]
    entry: dict[str, Any] = {
        "name": name, "kind": "captions", "path": str(root / name),
        "source": _source_of(manifest), "source_sha256": manifest.get("source", {}).get("sha256"),
        "format": manifest.get("format"), "splits": {}, "imported_at": manifest.get("imported_at"),
        "origin": manifest.get("origin", "registry"), "variant_of": manifest.get("variant_of"),
    }
    cs = load_caption_set(name, "all", root)
    for split, counts in manifest.get("splits", {}).items():
        with_images = sum(1 for it in cs.items if it.split == split and it.path is not None)
        entry["splits"][split] = {**counts, "with_images": with_images}
    splits = entry["splits"].values()
    entry["num_images"] = sum(s["images"] for s in splits)
    entry["num_captions"] = sum(s["captions"] for s in splits)
    entry["with_images"] = sum(s["with_images"] for s in splits)
    entry["images_from"] = cs.image_source
    return entry


def list_datasets(root: str | Path | None = None) -> list[dict[str, Any]]:
    """One plain-data summary per imported dataset (and the AID-holdout view when available)."""
    root = writable_root(root)
    out = []
    for name in imported_names(root):
        try:
            manifest = read_manifest(root, name)
            if manifest.get("kind") == "captions" or isinstance(SPECS.get(name), CaptionSetSpec):
                out.append(_caption_entry(root, manifest))
            else:
                out.append(_scene_entry(root, manifest))
        except (DataError, KeyError, TypeError) as exc:  # one damaged import does not hide the rest
            out.append({"name": name, "kind": "damaged", "path": str(root / name),
                        "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, DataError)
                        else str(exc)})
    names = {e["name"] for e in out}
    if {"AID", "RSICD"} <= names:
        view: dict[str, Any] = {"name": AID_HOLDOUT, "kind": "view", "of": "AID",
                                "excludes": "AID images used by RSICD training (and exact copies)"}
        try:
            ds = load_scene_dataset(AID_HOLDOUT, root)
            view.update(num_classes=len(ds.classnames), num_images=len(ds),
                        classes=dict(zip(ds.classnames, ds.class_counts())))
        except DataError as exc:
            view["error"] = str(exc)
        at = next(i for i, e in enumerate(out) if e["name"] == "AID") + 1
        out.insert(at, view)
    return out


__all__ = ["list_datasets"]
