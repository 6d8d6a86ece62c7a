"""Dataset specifications and the data-root contract.

One :class:`SceneDatasetSpec` per scene-classification dataset and one :class:`CaptionSetSpec` per
image-caption set: official names and aliases, official class folders with their official image
counts, the official inner layout, download locations, citation and licence.

The data root (``fedrs.paths.data_root()``, ``$FEDRS_DATA``) holds one folder per imported
dataset, named after the spec (``UCMerced``, ``AID``, ``UCM-Captions``, ...). Inside it sits the
official inner layout (``<Name>/<class_root>/<class>/<image>`` for scenes; the caption files and
the set's own image folder, if any, for caption sets) and ``fedrs_manifest.json``, which is
written last: a dataset folder with a manifest is complete.

A dataset imported under a name of its own (``fedrs data import PATH --name NAME``) is either a
*variant* of a registered dataset (another release of it, validated against its spec and keeping
its citation) or a *custom* dataset (any folder of class subfolders); its manifest says which, and
:func:`find_spec` / :func:`get_spec` build its spec from the manifest, so ``load_scene_dataset(NAME)``
and ``data.dataset: NAME`` in a run config work as for a registered dataset.

Readable class names for prompts come from :func:`readable_classname` (general rules), then the
spec's ``classname_overrides`` (per dataset), then the user's overrides at load time.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from fedrs.errors import DataError
from fedrs.paths import data_root

MANIFEST_NAME = "fedrs_manifest.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

#: the AID view that excludes every AID image used by RSICD training (see scenes.py)
AID_HOLDOUT = "AID-holdout"


@dataclass(frozen=True, eq=False)
class SceneDatasetSpec:
    """A scene-classification dataset in its official release.

    ``counts`` maps each official class folder to its official number of images; ``None`` where
    the per-class numbers are not known for certain (then only the class folders are validated).
    ``class_root`` is where the class folders sit inside ``$FEDRS_DATA/<name>/`` (the official
    archive's inner path); imports from mirrors with another top folder are normalised to it.
    """

    name: str
    classes: tuple[str, ...]
    counts: Mapping[str, int] | None
    class_root: str
    aliases: tuple[str, ...] = ()
    archive_names: tuple[str, ...] = ()
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None           # where only an MD5 of the archive is published
    archive_bytes: int | None = None
    homepage: str = ""
    citation: str = ""
    licence: str = ""
    subset_ok: bool = False
    classname_overrides: Mapping[str, str] = field(default_factory=dict)
    # official file stems: {class} is the class folder's name, {initial} its first letter
    # (matched ignoring case); one of the signs, beside the counts and the root folder, that a
    # folder with the official class names really is this dataset's release
    file_pattern: str = r"{class}[ _-]?\d+"
    note: str = ""
    kind: str = "scene"
    origin: str = "registry"         # "registry" | "variant" (--name on a release) | "custom"
    variant_of: str | None = None    # the registered dataset a variant is a release of

    @property
    def total(self) -> int | None:
        return sum(self.counts.values()) if self.counts else None

    def layout(self) -> str:
        return f"{self.class_root}/<class>/<image>"


@dataclass(frozen=True, eq=False)
class CaptionSetSpec:
    """An image-caption set.

    Captions come in Karpathy JSON (one of ``json_names``) and/or split files
    (``<split>_filename.txt`` + ``<split>_caps.txt``, ``captions_per_image`` lines per image).
    Images come from the set's own image folder (one of ``image_dirs``) when it was imported, or
    through ``images.csv`` (columns ``filename`` + ``map_columns``) from the imported scene dataset
    ``scene_source``. Expected counts are validated where given (``None``: not known for certain).
    """

    name: str
    aliases: tuple[str, ...] = ()
    json_names: tuple[str, ...] = ("dataset.json",)
    json_tags: tuple[str, ...] = ()          # values of the Karpathy JSON "dataset" field
    image_dirs: tuple[str, ...] = ("imgs", "images")
    scene_source: str | None = None
    map_columns: tuple[str, str] | None = None   # (class column, stem column) of images.csv
    captions_per_image: int | None = 5
    expected_json: Mapping[str, int] | None = None         # split -> images, Karpathy JSON
    expected_split_files: Mapping[str, int] | None = None  # split -> images, split files
    expected_mapped: Mapping[str, int] | None = None       # split -> images mapped to scene_source
    archive_names: tuple[str, ...] = ()
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    archive_bytes: int | None = None
    homepage: str = ""
    citation: str = ""
    licence: str = ""
    note: str = ""
    kind: str = "captions"
    origin: str = "registry"
    variant_of: str | None = None


def _classes(counts: Mapping[str, int]) -> tuple[str, ...]:
    return tuple(sorted(counts))


def _uniform(names: str, n: int) -> dict[str, int]:
    return {c: n for c in names.split()}


_UCM = _uniform(
    "agricultural airplane baseballdiamond beach buildings chaparral denseresidential forest "
    "freeway golfcourse harbor intersection mediumresidential mobilehomepark overpass parkinglot "
    "river runway sparseresidential storagetanks tenniscourt", 100)

_AID = {
    "Airport": 360, "BareLand": 310, "BaseballField": 220, "Beach": 400, "Bridge": 360,
    "Center": 260, "Church": 240, "Commercial": 350, "DenseResidential": 410, "Desert": 300,
    "Farmland": 370, "Forest": 250, "Industrial": 390, "Meadow": 280, "MediumResidential": 290,
    "Mountain": 340, "Park": 350, "Parking": 390, "Playground": 370, "Pond": 420, "Port": 380,
    "RailwayStation": 260, "Resort": 290, "River": 410, "School": 300, "SparseResidential": 300,
    "Square": 330, "Stadium": 290, "StorageTanks": 360, "Viaduct": 420,
}

_RSSCN7 = _uniform("aGrass bField cIndustry dRiverLake eForest fResident gParking", 400)

# Full EuroSAT RGB release (27,000 images); the shipped archive is a 600/class subset.
_EUROSAT = {
    "AnnualCrop": 3000, "Forest": 3000, "HerbaceousVegetation": 3000, "Highway": 2500,
    "Industrial": 2500, "Pasture": 2000, "PermanentCrop": 2500, "Residential": 3000,
    "River": 2500, "SeaLake": 3000,
}

# NWPU-RESISC45 (Cheng et al., 2017): 45 classes x 700, folder names as in the release.
_NWPU = _uniform(
    "airplane airport baseball_diamond basketball_court beach bridge chaparral church "
    "circular_farmland cloud commercial_area dense_residential desert forest freeway golf_course "
    "ground_track_field harbor industrial_area intersection island lake meadow medium_residential "
    "mobile_home_park mountain overpass palace parking_lot railway railway_station "
    "rectangular_farmland river roundabout runway sea_ice ship snowberg sparse_residential "
    "stadium storage_tank tennis_court terrace thermal_power_station wetland", 700)

# OPTIMAL-31 (Wang et al., 2019): 31 classes x 60. The class list follows the release's folder
# names as we know them (a subset of NWPU-RESISC45's names); folders are matched ignoring case and
# separators, so a mirror writing "Baseball Diamond" still validates.
_OPTIMAL31 = _uniform(
    "airplane airport baseball_diamond basketball_court beach bridge chaparral church "
    "circular_farmland commercial_area dense_residential desert forest freeway golf_course "
    "ground_track_field harbor industrial_area intersection island lake meadow medium_residential "
    "mobile_home_park mountain overpass parking_lot railway rectangular_farmland roundabout runway",
    60)

# WHU-RS19 (Dai & Yang, 2011): 19 classes of about 50 images each (1,005 in all). The per-class
# numbers are not certain (49-56 in the copies we know), so only the 19 folders are validated.
_WHU_RS19 = (
    "Airport Beach Bridge Commercial Desert Farmland footballField Forest Industrial Meadow "
    "Mountain Park Parking Pond Port railwayStation Residential River Viaduct".split()
)

# PatternNet (Zhou et al., 2018): 38 classes x 800.
_PATTERNNET = _uniform(
    "airplane baseball_field basketball_court beach bridge cemetery chaparral christmas_tree_farm "
    "closed_road coastal_mansion crosswalk dense_residential ferry_terminal football_field forest "
    "freeway golf_course harbor intersection mobile_home_park nursing_home oil_gas_field oil_well "
    "overpass parking_lot parking_space railway river runway runway_marking shipping_yard "
    "solar_panel sparse_residential storage_tank swimming_pool tennis_court transformer_station "
    "wastewater_treatment_plant", 800)


_SCENE_SPECS = [
    SceneDatasetSpec(
        name="UCMerced", classes=_classes(_UCM), counts=_UCM,
        class_root="UCMerced_LandUse/Images",
        aliases=("UCMerced_LandUse", "UCM", "UC Merced", "UCMerced-LandUse", "UCM-LandUse"),
        archive_names=("UCMerced_LandUse.zip",),
        url="http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
        # about 318 MB (2,100 TIFF); the authors publish no checksum: this MD5 is the one
        # TorchGeo pins for the same file (torchgeo.datasets.UCMerced.md5)
        md5="5b7ec56793786b6dc8a908e8854ac0e4",
        homepage="http://weegee.vision.ucmerced.edu/datasets/landuse.html",
        citation="Yang & Newsam, Bag-of-visual-words and spatial extensions for land-use "
                 "classification, ACM SIGSPATIAL GIS 2010",
        licence="USGS National Map imagery, public domain",
        classname_overrides={"agricultural": "agricultural land"},
    ),
    SceneDatasetSpec(
        name="AID", classes=_classes(_AID), counts=_AID, class_root="AID",
        aliases=("AID_dataset", "Aerial Image Dataset"),
        archive_names=("AID.zip", "AID.rar"),
        homepage="https://captain-whu.github.io/AID/",
        citation="Xia et al., AID: A benchmark data set for performance evaluation of aerial "
                 "scene classification, IEEE TGRS 2017",
        licence="Google Earth imagery, research use only",
        note="one exact duplicate pair in the release (Industrial 203/205)",
    ),
    SceneDatasetSpec(
        name="RSSCN7", classes=_classes(_RSSCN7), counts=_RSSCN7, class_root="RSSCN7",
        file_pattern=r"{initial}\d+",  # aGrass/a001.jpg
        aliases=("RSSCN7_dataset",), archive_names=("RSSCN7.zip",),
        homepage="https://sites.google.com/site/qinzoucn/documents",
        citation="Zou et al., Deep learning based feature selection for remote sensing scene "
                 "classification, IEEE GRSL 2015",
        licence="research use only",
        classname_overrides={"cIndustry": "industrial area", "bField": "farm field",
                             "gParking": "parking lot"},
    ),
    SceneDatasetSpec(
        name="EuroSAT", classes=_classes(_EUROSAT), counts=_EUROSAT, class_root="EuroSAT_RGB",
        aliases=("EuroSAT_RGB", "EuroSAT-RGB", "2750"),
        archive_names=("EuroSAT_RGB.zip", "EuroSAT.zip"),
        url="https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip?download=1",
        # Zenodo record 7711810 (EuroSAT v2): 94,658,721 bytes, MD5 f46e308c4d50d4bf32fedad2d3d62f3b
        # as Zenodo lists it; the SHA-256 of that file
        sha256="b4f5b234ecb7d7ff9c6cddb046543b4717c53fd6e9815be6c0e80cc614f51b90",
        archive_bytes=94_658_721,
        homepage="https://github.com/phelber/EuroSAT",
        citation="Helber et al., EuroSAT: A novel dataset and deep learning benchmark for land "
                 "use and land cover classification, IEEE JSTARS 2019",
        licence="MIT",
        subset_ok=True,  # subsets (e.g. the shipped first 600/class) are accepted and recorded
        classname_overrides={
            "AnnualCrop": "annual crop land", "Forest": "forest",
            "HerbaceousVegetation": "herbaceous vegetation land", "Highway": "highway or road",
            "Industrial": "industrial buildings", "Pasture": "pasture land",
            "PermanentCrop": "permanent crop land", "Residential": "residential buildings",
            "River": "river", "SeaLake": "sea or lake",
        },
    ),
    SceneDatasetSpec(
        name="NWPU-RESISC45", classes=_classes(_NWPU), counts=_NWPU, class_root="NWPU-RESISC45",
        aliases=("NWPU", "RESISC45", "NWPU_RESISC45"),
        archive_names=("NWPU-RESISC45.rar", "NWPU-RESISC45.zip"),
        homepage="https://gcheng-nwpu.github.io/",
        citation="Cheng et al., Remote sensing image scene classification: Benchmark and state "
                 "of the art, Proc. IEEE 2017",
        licence="research use only",
        note="released as .rar: extract it and import the folder",
    ),
    SceneDatasetSpec(
        name="OPTIMAL-31", classes=_classes(_OPTIMAL31), counts=_OPTIMAL31,
        class_root="OPTIMAL-31/Images", aliases=("OPTIMAL31", "OPTIMAL_31"),
        archive_names=("OPTIMAL-31.zip", "OPTIMAL-31.rar"),
        citation="Wang et al., Scene classification with recurrent attention of VHR remote "
                 "sensing images, IEEE TGRS 2019",
        licence="research use only",
    ),
    SceneDatasetSpec(
        name="WHU-RS19", classes=tuple(sorted(_WHU_RS19)), counts=None, class_root="WHU-RS19",
        aliases=("WHU_RS19", "RSDataset", "WHURS19"),
        archive_names=("WHU-RS19.zip", "WHU-RS19.rar"),
        homepage="https://captain-whu.github.io/BED4RS/",
        citation="Dai & Yang, Satellite image classification via two-layer sparse coding with "
                 "biased image representation, IEEE GRSL 2011",
        licence="Google Earth imagery, research use only",
        note="per-class counts not validated (about 50 each)",
    ),
    SceneDatasetSpec(
        name="PatternNet", classes=_classes(_PATTERNNET), counts=_PATTERNNET,
        class_root="PatternNet/images", aliases=("Pattern-Net", "PatternNet_dataset"),
        archive_names=("PatternNet.zip",),
        homepage="https://sites.google.com/view/zhouwx/dataset",
        citation="Zhou et al., PatternNet: A benchmark dataset for performance evaluation of "
                 "remote sensing image retrieval, ISPRS JPRS 2018",
        licence="research use only",
        classname_overrides={"oil_gas_field": "oil and gas field"},
    ),
]

_CAPTION_SPECS = [
    CaptionSetSpec(
        name="UCM-Captions", aliases=("UCM_Captions", "UCM_captions", "UCMCaptions", "ucm_precomp"),
        json_names=("dataset.json",), json_tags=("ucm", "ucm_captions"),
        image_dirs=("imgs", "images"),
        scene_source="UCMerced", map_columns=("ucmerced_class", "ucmerced_stem"),
        expected_json={"train": 1680, "val": 210, "test": 210},
        homepage="https://github.com/201528014227051/RSICD_optimal",
        citation="Qu et al., Deep semantic understanding of high resolution remote sensing "
                 "image, CITS 2016",
        licence="research use only (images: UC Merced, public domain)",
    ),
    CaptionSetSpec(
        name="RSICD", aliases=("RSICD_optimal", "rsicd_precomp"),
        json_names=("dataset_rsicd.json", "dataset.json"), json_tags=("rsicd",),
        image_dirs=("RSICD_images", "images", "imgs"),
        scene_source="AID", map_columns=("aid_class", "aid_stem"),
        # Karpathy JSON of the release: 10,921 images (train 8,734 / val 1,094 / test 1,093).
        expected_json={"train": 8734, "val": 1094, "test": 1093},
        # AMFMN retrieval split files (train required; test checked when present).
        # the test split (1,093 images, one file-name line per caption) ships with its own
        # mapping test_images.csv: 1,027 of its images are AID images outside RSICD training
        expected_split_files={"train": 9828, "test": 1093},
        expected_mapped={"train": 8973, "test": 1027},
        homepage="https://github.com/201528014227051/RSICD_optimal",
        citation="Lu et al., Exploring models and data for remote sensing image caption "
                 "generation, IEEE TGRS 2017",
        licence="research use only",
    ),
    CaptionSetSpec(
        name="RSITMD", aliases=("rsitmd_precomp",),
        json_names=("dataset_RSITMD.json", "dataset_rsitmd.json", "dataset.json"),
        json_tags=("rsitmd",), image_dirs=("images", "imgs"),
        # 4,743 images x 5 sentences; the split sizes differ between releases: not validated.
        homepage="https://github.com/xiaoyuan1996/AMFMN",
        citation="Yuan et al., Exploring a fine-grained multiscale method for cross-modal "
                 "remote sensing image retrieval, IEEE TGRS 2022",
        licence="research use only",
    ),
    CaptionSetSpec(
        name="Sydney-Captions", aliases=("Sydney_Captions", "Sydney_captions", "Sydney",
                                         "sydney_precomp"),
        json_names=("dataset.json",), json_tags=("sydney", "sydney_captions"),
        image_dirs=("imgs", "images"),
        # 613 images x 5 sentences; split sizes vary between copies: not validated.
        homepage="https://github.com/201528014227051/RSICD_optimal",
        citation="Qu et al., Deep semantic understanding of high resolution remote sensing "
                 "image, CITS 2016",
        licence="research use only",
    ),
]

#: every dataset by canonical name; tests may add or replace entries (monkeypatch.setitem)
SPECS: dict[str, SceneDatasetSpec | CaptionSetSpec] = {s.name: s for s in _SCENE_SPECS + _CAPTION_SPECS}


def normalise(name: str) -> str:
    """Key for matching names and folders: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def known_names() -> list[str]:
    return list(SPECS) + [AID_HOLDOUT]


def scene_specs() -> list[SceneDatasetSpec]:
    return [s for s in SPECS.values() if isinstance(s, SceneDatasetSpec)]


def caption_specs() -> list[CaptionSetSpec]:
    return [s for s in SPECS.values() if isinstance(s, CaptionSetSpec)]


def registry_spec(name: str) -> SceneDatasetSpec | CaptionSetSpec | None:
    """The registered spec whose name or alias matches ``name`` (ignoring case and separators)."""
    key = normalise(name)
    if not key:
        return None
    for spec in SPECS.values():
        if key == normalise(spec.name) or key in {normalise(a) for a in spec.aliases}:
            return spec
    return None


def find_spec(name: str, root: str | Path | None = None) -> SceneDatasetSpec | CaptionSetSpec | None:
    """The spec of ``name``: a registered dataset (name or alias, ignoring case and separators),
    else a dataset imported under a name of its own in the data root ``root``; or None."""
    return registry_spec(name) or imported_spec(name, root)


def get_spec(name: str, root: str | Path | None = None) -> SceneDatasetSpec | CaptionSetSpec:
    spec = find_spec(name, root)
    if spec is None:
        own = own_names(resolve_root(root))
        mine = f"; imported under their own names: {', '.join(own)}" if own else ""
        raise DataError(
            f"unknown dataset {name!r}: known datasets are {', '.join(known_names())}{mine}. "
            f"To use a folder of your own (one sub-folder of images per class), run "
            f"`fedrs data import PATH --name {name}`"
        )
    return spec


# --- datasets imported under a name of their own ------------------------------------------------

_UNSAFE_NAME = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')


def check_dataset_name(name: str) -> str:
    """``name`` as a dataset (and folder) name, NFC-normalised; a DataError saying why not.

    Spaces and non-ASCII letters are fine; path separators, characters Windows forbids, control
    characters, a leading dot and names of registered datasets are not.
    """
    clean = unicodedata.normalize("NFC", str(name)).strip()
    if not clean:
        why = "it is empty"
    elif len(clean) > 64:
        why = "it is longer than 64 characters"
    elif clean[0] in ".~":
        why = "it starts with a dot or ~"
    elif _UNSAFE_NAME.search(clean):
        why = 'it holds a path separator or a character file systems refuse (/ \\ < > : " | ? *)'
    elif normalise(clean) == normalise(AID_HOLDOUT):
        why = f"it names the view {AID_HOLDOUT}"
    elif registry_spec(clean) is not None:
        why = f"it names the registered dataset {registry_spec(clean).name}"
    else:
        return clean
    raise DataError(f"{name!r} cannot name a dataset ({why}): choose another name, e.g. "
                    f"`--name My-Scenes`")


@functools.lru_cache(maxsize=32)
def _manifest_summary(path: str, stamp: tuple[int, int]) -> dict[str, Any] | None:
    """The manifest at ``path`` without its per-image list (``stamp``: mtime and size, so an
    import that rewrites it is read again)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    manifest.pop("images", None)
    return manifest


def _own_folder(name: str, root: Path) -> Path | None:
    """The folder of ``root`` holding the dataset imported as ``name`` (exact, else ignoring case)."""
    if not name or _UNSAFE_NAME.search(name) or name.startswith("."):
        return None
    exact = root / unicodedata.normalize("NFC", name.strip())
    if (exact / MANIFEST_NAME).is_file():
        return exact
    key = unicodedata.normalize("NFC", name.strip()).casefold()
    try:
        for child in root.iterdir():
            if child.name.casefold() == key and (child / MANIFEST_NAME).is_file():
                return child
    except OSError:
        pass
    return None


def spec_from_manifest(manifest: Mapping[str, Any]) -> SceneDatasetSpec | CaptionSetSpec | None:
    """The spec of a variant or custom import, from (the head of) its manifest; None otherwise."""
    origin, name = manifest.get("origin"), manifest.get("name")
    if origin == "variant":
        base = SPECS.get(manifest.get("variant_of") or "")
        if base is None:
            return None
        return replace(base, name=name, aliases=(), archive_names=(), url=None, sha256=None,
                       md5=None, archive_bytes=None, origin="variant", variant_of=base.name)
    if origin == "custom" and manifest.get("kind") == "scene":
        classes = tuple(c["name"] for c in manifest.get("classes", []))
        return SceneDatasetSpec(
            name=name, classes=classes, counts=None, class_root=manifest.get("class_root", ""),
            citation=manifest.get("citation") or "", licence=manifest.get("licence") or "",
            note="your own dataset (fedrs data import --name)", origin="custom")
    return None


@functools.lru_cache(maxsize=32)
def _imported_spec(path: str, stamp: tuple[int, int]) -> SceneDatasetSpec | CaptionSetSpec | None:
    summary = _manifest_summary(path, stamp)
    return spec_from_manifest(summary) if summary else None


def imported_spec(name: str, root: str | Path | None = None) -> SceneDatasetSpec | CaptionSetSpec | None:
    """The spec of a dataset imported as ``name`` with ``--name`` in the data root, or None.
    The same object for as long as the import is unchanged (specs are compared by identity)."""
    folder = _own_folder(name, resolve_root(root))
    if folder is None:
        return None
    path = folder / MANIFEST_NAME
    try:
        st = path.stat()
    except OSError:
        return None
    return _imported_spec(str(path), (st.st_mtime_ns, st.st_size))


def own_names(root: Path) -> list[str]:
    """Datasets imported under names of their own (variants and custom datasets) in ``root``."""
    out = []
    for name in imported_names(root):
        if registry_spec(name) is None and imported_spec(name, root) is not None:
            out.append(name)
    return out


# --- the data-root contract ------------------------------------------------------------------

def resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_root()


def writable_root(root: str | Path | None) -> Path:
    """The data root, refused (a DataError naming the fix) when it exists but is no folder."""
    path = resolve_root(root)
    if path.exists() and not path.is_dir():
        raise DataError(f"the data root is a file, not a folder ({path}): point --root or "
                        f"FEDRS_DATA at a folder")
    return path


def not_imported(name: str, root: Path, why: str = "") -> DataError:
    spec = registry_spec(name)
    archives = [a for a in (spec.archive_names if spec else ()) if not a.endswith(".rar")]
    archive = archives[0] if archives else f"<{name} folder>"
    why = f" ({why})" if why else ""
    return DataError(
        f"dataset {name!r} is not imported in {root}{why}: run `fedrs data import {archive}` "
        f"(or `fedrs data download {name}`)"
    )


def read_manifest(root: Path, name: str) -> dict[str, Any]:
    """The manifest of ``<root>/<name>``; a DataError telling how to import it when absent."""
    path = root / name / MANIFEST_NAME
    if not path.is_file():
        raise not_imported(name, root)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path} is unreadable ({exc}): re-import the dataset with `fedrs data import --force`"
        ) from exc
    if manifest.get("name") != name:
        raise DataError(f"{path} belongs to {manifest.get('name')!r}, not {name!r}: "
                        f"re-import it with `fedrs data import --force`")
    return manifest


def imported_names(root: Path) -> list[str]:
    """Names of the datasets imported in ``root`` (folders with a manifest), registry order first."""
    if not root.is_dir():
        return []
    present = {p.parent.name for p in root.glob(f"*/{MANIFEST_NAME}")
               if not p.parent.name.startswith(".")}  # not an interrupted import's temp folder
    order = [n for n in SPECS if n in present]
    return order + sorted(present - set(order))


# --- readable class names ----------------------------------------------------------------------

# Concatenated or abbreviated folder names, keyed by normalise(name) after the prefix strip.
_KNOWN_NAMES = {
    "denseresidential": "dense residential",
    "mediumresidential": "medium residential",
    "sparseresidential": "sparse residential",
    "baseballdiamond": "baseball diamond",
    "golfcourse": "golf course",
    "mobilehomepark": "mobile home park",
    "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
    "parkinglot": "parking lot",
    "riverlake": "river or lake",
    "resident": "residential",
}


def readable_classname(folder: str) -> str:
    """A readable class name for prompts from an official folder name.

    ``"denseresidential"`` -> ``"dense residential"``, ``"BaseballField"`` -> ``"baseball field"``,
    ``"ground_track_field"`` -> ``"ground track field"``, ``"dRiverLake"`` -> ``"river or lake"``
    (RSSCN7's one-letter ordering prefix is dropped).
    """
    name = folder.strip()
    name = re.sub(r"^[a-z](?=[A-Z][a-z])", "", name)  # RSSCN7: aGrass, bField, ...
    known = _KNOWN_NAMES.get(normalise(name))
    if known:
        return known
    name = re.sub(r"[_\-]+", " ", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)      # camelCase -> camel Case
    name = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", name)    # ABCWord -> ABC Word
    words = [_KNOWN_NAMES.get(w.lower(), w.lower()) for w in name.split()]
    return " ".join(words)


def prompt_names(spec: SceneDatasetSpec | None, classnames: list[str],
                 overrides: Mapping[str, str] | None = None) -> list[str]:
    """Readable names in ``classnames`` order: user overrides > spec overrides > general rules."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(classnames))
    if unknown:
        raise DataError(
            f"classname_overrides name unknown class folder(s) {unknown}: "
            f"use the official folder names {classnames}"
        )
    spec_over = dict(spec.classname_overrides) if spec is not None else {}
    return [overrides.get(c) or spec_over.get(c) or readable_classname(c) for c in classnames]


__all__ = [
    "SceneDatasetSpec", "CaptionSetSpec", "SPECS", "MANIFEST_NAME", "IMAGE_EXTENSIONS",
    "AID_HOLDOUT", "normalise", "known_names", "scene_specs", "caption_specs", "find_spec",
    "get_spec", "registry_spec", "imported_spec", "spec_from_manifest", "check_dataset_name",
    "own_names", "resolve_root", "writable_root", "not_imported", "read_manifest", "imported_names",
    "readable_classname", "prompt_names",
]
