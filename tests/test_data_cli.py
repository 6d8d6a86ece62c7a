"""`fedrs data import|list|download` through `fedrs.cli.main`."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def tiny_source(tiny_spec, data_factory):
    return data_factory.scene_tree("release", "Tiny_Release/Images", tiny_spec.counts)


def test_import_then_list_json(cli_data_only, tiny_source, tmp_path, capsys):
    root = tmp_path / "data"
    assert cli_data_only(["data", "import", str(tiny_source), "--root", str(root)]) == 0
    assert "TinyScenes: imported 3 classes, 8 images" in capsys.readouterr().out

    assert cli_data_only(["data", "list", "--json", "--root", str(root)]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["root"] == str(root.resolve())
    (entry,) = listing["datasets"]
    assert entry["name"] == "TinyScenes" and entry["kind"] == "scene"
    assert entry["num_classes"] == 3 and entry["num_images"] == 8
    assert entry["classes"] == {"Alpha": 3, "BetaGamma": 3, "delta": 2}
    assert entry["image_sizes"]["min"] == [8, 6] and entry["source"] == str(tiny_source)
    assert entry["path"] == str(root.resolve() / "TinyScenes")

    assert cli_data_only(["data", "list", "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "TinyScenes" in text and "8 images" in text and "Alpha 3" in text


def test_list_empty_root(cli_data_only, tmp_path, capsys):
    assert cli_data_only(["data", "list", "--root", str(tmp_path)]) == 0
    assert "no datasets imported" in capsys.readouterr().out
    assert cli_data_only(["data", "list", "--json", "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == []


def test_list_caption_set(cli_data_only, patch_spec, data_factory, tmp_path, capsys):
    names = ["a_1.jpg", "b_2.jpg"]
    data_factory.write("RSICD/train_filename.txt", "\n".join(names) + "\n")
    data_factory.write("RSICD/train_caps.txt", "".join(f"{n} {k}\n" for n in names for k in range(5)))
    patch_spec("RSICD", expected_split_files={"train": 2}, expected_mapped=None)
    root = tmp_path / "data"
    assert cli_data_only(["data", "import", str(data_factory.base / "RSICD"), "--root", str(root)]) == 0
    capsys.readouterr()
    assert cli_data_only(["data", "list", "--json", "--root", str(root)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["datasets"]
    assert entry["kind"] == "captions" and entry["num_images"] == 2 and entry["num_captions"] == 10
    assert entry["splits"] == {"train": {"images": 2, "captions": 10, "with_images": 0}}


def test_errors_are_one_line_exit_2(cli_data_only, tmp_path, capsys):
    assert cli_data_only(["data", "import", str(tmp_path / "missing.zip"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedrs: error:") and "missing.zip" in err and "\n" not in err

    assert cli_data_only(["data", "download", "nope", "--root", str(tmp_path)]) == 2
    assert "known datasets are" in capsys.readouterr().err


def test_exclude_bad_flag(cli_data_only, tiny_source, tmp_path, capsys):
    (tiny_source / "Tiny_Release/Images/Alpha/alpha_2.jpg").write_bytes(b"junk")
    root = tmp_path / "data"
    assert cli_data_only(["data", "import", str(tiny_source), "--root", str(root)]) == 2
    assert "--exclude-bad" in capsys.readouterr().err
    assert cli_data_only(["data", "import", str(tiny_source), "--root", str(root), "--exclude-bad"]) == 0
    assert "excluded (undecodable): Tiny_Release/Images/Alpha/alpha_2.jpg" in capsys.readouterr().out


def test_download_via_file_url(cli_data_only, tiny_source, data_factory, tmp_path, capsys):
    archive = data_factory.zip(tiny_source, "Tiny_Release.zip")
    root = tmp_path / "data"
    assert cli_data_only(["data", "download", "TinyScenes", "--url", archive.as_uri(),
                          "--root", str(root)]) == 0
    assert (root / "TinyScenes" / "fedrs_manifest.json").is_file()


def test_list_reports_a_damaged_manifest_and_goes_on(cli_data_only, tiny_source, tmp_path, capsys):
    root = tmp_path / "data"
    assert cli_data_only(["data", "import", str(tiny_source), "--root", str(root)]) == 0
    (root / "Broken").mkdir()
    (root / "Broken" / "fedrs_manifest.json").write_text("{not json")
    (root / ".fedrs-import-TinyScenes-x").mkdir()  # an interrupted import's temp folder
    (root / ".fedrs-import-TinyScenes-x" / "fedrs_manifest.json").write_text("{}")
    capsys.readouterr()
    assert cli_data_only(["data", "list", "--json", "--root", str(root)]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)["datasets"]}
    assert set(entries) == {"TinyScenes", "Broken"}
    assert entries["Broken"]["kind"] == "damaged" and "--force" in entries["Broken"]["error"]
    assert cli_data_only(["data", "list", "--root", str(root)]) == 0
    assert "Broken" in capsys.readouterr().out


def test_import_reports_skipped_archives_and_results_on_stdout(cli_data_only, tiny_spec, data_factory,
                                                               tmp_path, capsys):
    # the library logs (fedrs.data); the command shows it as it printed it before it logged
    shelf = data_factory.base / "shelf"
    data_factory.scene_tree("shelf/release", "Tiny_Release/Images", tiny_spec.counts)
    notes = data_factory.write("notes/readme.txt", "not a dataset").parent
    junk = data_factory.zip(notes, "shelf/notes.zip")
    assert cli_data_only(["data", "import", str(shelf), "--root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert f"fedrs: skipped {junk}: no known dataset layout inside" in out
    assert "TinyScenes: imported 3 classes, 8 images" in out


def test_the_library_logs_instead_of_printing(tiny_source, tmp_path, capsys, caplog):
    import logging

    from fedrs.data import import_sources

    with caplog.at_level(logging.INFO, logger="fedrs.data"):
        import_sources([tiny_source], tmp_path / "quiet", progress=False)
        assert not caplog.records  # progress=False: nothing to report
        import_sources([tiny_source], tmp_path / "loud")
    assert "TinyScenes: imported 3 classes, 8 images" in caplog.text
    assert capsys.readouterr().out == ""
