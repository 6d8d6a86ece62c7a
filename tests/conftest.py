"""Shared pytest fixtures.

Data layer: tiny synthetic datasets in the official layouts (``data_factory``, ``tiny_spec``,
``cli_data_only``) and ``real_data_root``, the shipped archives imported once per session.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# --- data layer ---------------------------------------------------------------------------------

REAL_SOURCES = ("UCMerced_LandUse.zip", "AID.zip", "RSSCN7.zip", "EuroSAT_RGB.zip",
                "UCM_Captions", "RSICD")


def real_source_dir() -> Path:
    """The shipped data (``../shared/data`` beside the repository, or ``$FEDRS_SOURCE``)."""
    return Path(os.environ.get("FEDRS_SOURCE") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def real_data_source() -> Path:
    """The folder of shipped archives; skips the test, saying why, when it is absent."""
    src = real_source_dir()
    missing = [n for n in REAL_SOURCES if not (src / n).exists()]
    if missing:
        pytest.skip(f"shipped data not found: {src} lacks {missing} "
                    f"(set FEDRS_SOURCE to the folder holding the shipped archives)")
    return src


@pytest.fixture(scope="session")
def real_data_root(real_data_source, tmp_path_factory) -> Path:
    """A data root holding every shipped dataset, imported once per test session."""
    from fedrs.data import import_sources

    root = tmp_path_factory.mktemp("fedrs-real-data")
    import_sources([real_data_source], root=root, progress=False)
    return root


class DataFactory:
    """Builds tiny image datasets, caption files and archives under a temporary folder."""

    def __init__(self, base: Path):
        self.base = base
        self._seed = 0

    def jpeg(self, size: tuple[int, int] = (8, 6)) -> bytes:
        """A small valid JPEG, different bytes on every call (the seed is in its comment)."""
        from PIL import Image

        self._seed += 1
        s = self._seed
        img = Image.new("RGB", size, ((s * 37) % 256, (s * 91) % 256, (s * 13) % 256))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, comment=f"fedrs-test-{s}".encode())
        return buf.getvalue()

    def scene_tree(self, folder: str | Path, class_root: str, counts: dict[str, int],
                   size: tuple[int, int] = (8, 6), stem: str = "{cls}_{i}") -> Path:
        """``folder/<class_root>/<class>/<stem>.jpg`` with ``counts[class]`` images; the folder."""
        folder = self.base / folder
        for cls, n in counts.items():
            d = folder / class_root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (d / f"{stem.format(cls=cls.lower(), i=i)}.jpg").write_bytes(self.jpeg(size))
        return folder

    def write(self, path: str | Path, content: str | bytes) -> Path:
        path = self.base / path
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def karpathy(self, path: str | Path, images: list[tuple[str, str, list[str]]],
                 tag: str = "") -> Path:
        """A Karpathy-format JSON from (filename, split, sentences)."""
        data = {"images": [
            {"filename": f, "imgid": i, "split": split,
             "sentences": [{"raw": s, "tokens": s.split()} for s in sents]}
            for i, (f, split, sents) in enumerate(images)]}
        if tag:
            data["dataset"] = tag
        return self.write(path, json.dumps(data))

    def zip(self, folder: Path, name: str) -> Path:
        """Zip ``folder``'s contents (paths relative to it) into ``base/name``."""
        out = self.base / name
        with zipfile.ZipFile(out, "w") as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(folder).as_posix())
        return out

    def tar(self, folder: Path, name: str, mode: str = "w:gz") -> Path:
        out = self.base / name
        with tarfile.open(out, mode) as tf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    tf.add(p, "./" + p.relative_to(folder).as_posix())
        return out


@pytest.fixture
def data_factory(tmp_path) -> DataFactory:
    base = tmp_path / "src"
    base.mkdir()
    return DataFactory(base)


TINY_COUNTS = {"Alpha": 3, "BetaGamma": 3, "delta": 2}


@pytest.fixture
def tiny_spec(monkeypatch):
    """A registered three-class scene dataset "TinyScenes" (layout Tiny_Release/Images/<class>)."""
    from fedrs.data import registry

    spec = registry.SceneDatasetSpec(
        name="TinyScenes", classes=tuple(sorted(TINY_COUNTS)), counts=dict(TINY_COUNTS),
        class_root="Tiny_Release/Images", aliases=("tiny", "Tiny_Release"),
        archive_names=("Tiny_Release.zip",), homepage="https://example.org/tiny",
        classname_overrides={"delta": "delta area"},
    )
    monkeypatch.setitem(registry.SPECS, spec.name, spec)
    return spec


@pytest.fixture
def patch_spec(monkeypatch):
    """``patch_spec("AID", counts={...})``: replace fields of a registered spec for one test."""
    from fedrs.data import registry

    def patch(name: str, **changes):
        spec = dataclasses.replace(registry.SPECS[name], **changes)
        monkeypatch.setitem(registry.SPECS, name, spec)
        return spec

    return patch


@pytest.fixture
def cli_data_only(monkeypatch):
    """``fedrs.cli.main`` with only the data commands, so these tests do not depend on the
    other command groups being importable."""
    import fedrs.cli

    monkeypatch.setattr(fedrs.cli, "COMMAND_MODULES", ["fedrs.data.commands"])
    return fedrs.cli.main
