"""``fedrs data import|list|download`` and :func:`list_datasets` (what is imported, in numbers)."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from fedrs.errors import DataError

from .captions import load_caption_set
from .importing import download_dataset, import_sources
from .registry import (
    AID_HOLDOUT, CaptionSetSpec, SPECS, imported_names, read_manifest, resolve_root,
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
    }


def _caption_entry(root: Path, manifest: dict) -> dict[str, Any]:
    name = manifest["name"]
    entry: dict[str, Any] = {
        "name": name, "kind": "captions", "path": str(root / name),
        "source": _source_of(manifest), "source_sha256": manifest.get("source", {}).get("sha256"),
        "format": manifest.get("format"), "splits": {}, "imported_at": manifest.get("imported_at"),
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
    root = resolve_root(root)
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


# --- human-readable listing ---------------------------------------------------------------------

def _sizes(s: dict) -> str:
    if not s:
        return ""
    lo, hi = s["min"], s["max"]
    return f"{lo[0]}x{lo[1]}" if lo == hi else f"{lo[0]}x{lo[1]}..{hi[0]}x{hi[1]} ({s['distinct']} sizes)"


def _format(entries: list[dict[str, Any]], root: Path) -> str:
    lines = [f"data root: {root}"]
    for e in entries:
        if "error" in e:
            lines.append(f"{e['name']:<16}{e['kind']:<10}unavailable: {e['error']}")
        elif e["kind"] in ("scene", "view"):
            head = f"{e['name']:<16}{e['kind']:<10}{e['num_classes']:>3} classes {e['num_images']:>8,} images"
            if e["kind"] == "scene":
                head += f"  {_sizes(e['image_sizes'])}" + ("  subset" if e["subset"] else "")
                head += f"  from {e['source']}"
            else:
                head += f"  {e['of']} minus {e['excludes']}"
            lines.append(head)
            classes = ", ".join(f"{c} {n:,}" for c, n in e["classes"].items())
            lines += textwrap.wrap(classes, 100, initial_indent=" " * 18, subsequent_indent=" " * 18)
            if e["kind"] == "scene" and e["duplicates"]:
                lines.append(" " * 18 + f"{e['duplicates']} group(s) of exact duplicates (see manifest)")
            if e["kind"] == "scene" and e["excluded"]:
                lines.append(" " * 18 + f"{e['excluded']} undecodable image(s) excluded (see manifest)")
        else:
            per = e["num_captions"] / e["num_images"] if e["num_images"] else 0
            per_s = f"x {per:g}" if per == int(per) else f"({per:.2f} per image)"
            splits = " / ".join(f"{s} {v['images']:,}" for s, v in e["splits"].items())
            lines.append(f"{e['name']:<16}{'captions':<10}{e['num_images']:,} images {per_s} = "
                         f"{e['num_captions']:,} captions  [{splits}]  from {e['source']}")
            lines.append(" " * 18 + f"with images: {e['with_images']:,} "
                         f"({e['images_from']})")
    return "\n".join(lines)


# --- the commands -------------------------------------------------------------------------------

def _cmd_import(args: argparse.Namespace) -> int:
    import_sources(args.sources, args.root, exclude_bad=args.exclude_bad, force=args.force,
                   progress=True)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    entries = list_datasets(root)
    if args.json:
        print(json.dumps({"root": str(root), "datasets": entries}, indent=2))
    elif not entries:
        print(f"no datasets imported in {root}: run `fedrs data import <archive or folder>` "
              f"(or `fedrs data download NAME`)")
    else:
        print(_format(entries, root))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    download_dataset(args.name, args.root, url=args.url, sha256=args.sha256, force=args.force)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="import, list and download datasets",
        description="Datasets in the data root ($FEDRS_DATA, default ./data).")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    root_help = "data root (default: $FEDRS_DATA or ./data)"

    imp = sub.add_parser(
        "import", help="import archives or folders in the official layouts",
        description="Import dataset archives (zip/tar), dataset folders, or folders holding "
                    "several of them; datasets are recognised by their layout. Re-running skips "
                    "what is already imported and verified.")
    imp.add_argument("sources", nargs="+", metavar="SRC", help="archive, dataset folder, or folder of those")
    imp.add_argument("--root", type=Path, help=root_help)
    imp.add_argument("--exclude-bad", action="store_true",
                     help="leave undecodable images out (recorded in the manifest) instead of failing")
    imp.add_argument("--force", action="store_true", help="re-import even if present and verified")
    imp.set_defaults(func=_cmd_import)

    ls = sub.add_parser("list", help="list imported datasets with their counts")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--root", type=Path, help=root_help)
    ls.set_defaults(func=_cmd_list)

    dl = sub.add_parser("download", help="download a dataset's official archive and import it",
                        description=f"Known datasets: {', '.join(SPECS)}.")
    dl.add_argument("name", metavar="NAME")
    dl.add_argument("--root", type=Path, help=root_help)
    dl.add_argument("--url", help="download from this URL instead (http(s):// or file://)")
    dl.add_argument("--sha256", help="expected sha256 of the downloaded archive")
    dl.add_argument("--force", action="store_true", help="download and re-import even if present")
    dl.set_defaults(func=_cmd_download)


__all__ = ["list_datasets", "register"]
