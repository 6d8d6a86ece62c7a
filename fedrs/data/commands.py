"""``fedrs data import|list|download``: thin faces over ``importing``, ``ensure``, ``listing`` and
``download``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from fedrs.errors import DataError

from .download import download_dataset
from .ensure import MIRROR_ENV, SOURCE_ENV, STUDY_DATASETS, ensure_datasets
from .importing import import_sources
from .listing import list_datasets
from .registry import SPECS, writable_root


# --- human-readable listing ---------------------------------------------------------------------

def _sizes(s: dict) -> str:
    if not s:
        return ""
    lo, hi = s["min"], s["max"]
    return f"{lo[0]}x{lo[1]}" if lo == hi else f"{lo[0]}x{lo[1]}..{hi[0]}x{hi[1]} ({s['distinct']} sizes)"


def _origin(e: dict[str, Any]) -> str:
    if e.get("origin") == "custom":
        return "  your own dataset"
    if e.get("origin") == "variant":
        return f"  a release of {e.get('variant_of')}"
    return ""


def _format(entries: list[dict[str, Any]], root: Path) -> str:
    lines = [f"data root: {root}"]
    for e in entries:
        if "error" in e:
            lines.append(f"{e['name']:<16}{e['kind']:<10}unavailable: {e['error']}")
        elif e["kind"] in ("scene", "view"):
            head = f"{e['name']:<16}{e['kind']:<10}{e['num_classes']:>3} classes {e['num_images']:>8,} images"
            if e["kind"] == "scene":
                head += f"  {_sizes(e['image_sizes'])}" + ("  subset" if e["subset"] else "")
                head += _origin(e) + f"  from {e['source']}"
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
    if not args.sources:
        given = [flag for flag, on in (("--name", args.name), ("--replace", args.replace),
                                       ("--merge", args.merge), ("--force", args.force),
                                       ("--exclude-bad", args.exclude_bad)) if on]
        if given:
            raise DataError(f"{' '.join(given)} needs a source (fedrs data import): give the "
                            f"archive or folder, e.g. `fedrs data import PATH {given[0]}`")
        ensure_datasets(STUDY_DATASETS, args.root, allow_download=not args.no_download)
        return 0
    import_sources(args.sources, args.root, exclude_bad=args.exclude_bad, force=args.force,
                   progress=True, name=args.name, replace=args.replace, merge=args.merge)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    root = writable_root(args.root)
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
    download_dataset(args.name, args.root, url=args.url, sha256=args.sha256, force=args.force,
                     as_name=args.as_name, replace=args.replace)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="import, list and download datasets",
        description="Datasets in the data root ($FEDRS_DATA, default ./data).")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    root_help = "data root (default: $FEDRS_DATA or ./data)"

    imp = sub.add_parser(
        "import", help="import archives or folders (official layouts, or your own with --name)",
        description="Import dataset archives (zip/tar), dataset folders, or folders holding "
                    "several of them; datasets are recognised by their layout. Re-running skips "
                    "what is already imported and verified; another release of an imported "
                    "dataset is refused unless --replace, --merge or --name says what to do. "
                    f"Without SRC: import the study's datasets ({', '.join(STUDY_DATASETS)}) "
                    f"that are missing, from ${SOURCE_ENV} (default ../shared/data) when it "
                    f"exists, else by download (from ${MIRROR_ENV} when set, else the official "
                    "releases), each checked against its checksum.")
    imp.add_argument("sources", nargs="*", metavar="SRC",
                     help="archive, dataset folder, or folder of those (none: the study's datasets)")
    imp.add_argument("--root", type=Path, help=root_help)
    imp.add_argument("--name", metavar="NAME",
                     help="import the one dataset in SRC under this name: another release of a "
                          "known dataset (kept beside it), or any folder with one sub-folder of "
                          "images per class (your own dataset; use NAME as data.dataset)")
    how = imp.add_mutually_exclusive_group()
    how.add_argument("--replace", action="store_true",
                     help="replace an import of another release of the same dataset")
    how.add_argument("--merge", action="store_true",
                     help="add SRC's images to an import of the same dataset (no file may collide)")
    imp.add_argument("--exclude-bad", action="store_true",
                     help="leave undecodable images out (recorded in the manifest) instead of failing")
    imp.add_argument("--force", action="store_true", help="re-import even if present and verified")
    imp.add_argument("--no-download", action="store_true",
                     help="without SRC: fail instead of downloading what the local folder lacks")
    imp.set_defaults(func=_cmd_import, console_loggers=("fedrs.data",))

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
    dl.add_argument("--name", dest="as_name", metavar="NAME",
                    help="import it under this name, beside an import of another release")
    dl.add_argument("--replace", action="store_true",
                    help="replace an import of another release of the same dataset")
    dl.set_defaults(func=_cmd_download, console_loggers=("fedrs.data",))


__all__ = ["register"]
