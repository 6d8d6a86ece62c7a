"""Dataset registry: official classes and counts, aliases, readable class names."""

from __future__ import annotations

import pytest

from fedrs.data import registry
from fedrs.data.registry import get_spec, prompt_names, readable_classname
from fedrs.errors import DataError


@pytest.mark.parametrize("folder, readable", [
    ("denseresidential", "dense residential"),
    ("mediumresidential", "medium residential"),
    ("sparseresidential", "sparse residential"),
    ("baseballdiamond", "baseball diamond"),
    ("golfcourse", "golf course"),
    ("mobilehomepark", "mobile home park"),
    ("storagetanks", "storage tanks"),
    ("tenniscourt", "tennis court"),
    ("chaparral", "chaparral"),
    ("BaseballField", "baseball field"),
    ("StorageTanks", "storage tanks"),
    ("HerbaceousVegetation", "herbaceous vegetation"),
    ("aGrass", "grass"),
    ("dRiverLake", "river or lake"),
    ("fResident", "residential"),
    ("ground_track_field", "ground track field"),
    ("railwayStation", "railway station"),
    ("Airport", "airport"),
])
def test_readable_classname(folder, readable):
    assert readable_classname(folder) == readable


def test_per_dataset_and_user_overrides():
    eurosat = get_spec("EuroSAT")
    names = prompt_names(eurosat, list(eurosat.classes))
    assert dict(zip(eurosat.classes, names))["SeaLake"] == "sea or lake"
    assert dict(zip(eurosat.classes, names))["AnnualCrop"] == "annual crop land"
    user = prompt_names(eurosat, list(eurosat.classes), {"SeaLake": "body of water"})
    assert dict(zip(eurosat.classes, user))["SeaLake"] == "body of water"
    with pytest.raises(DataError, match="unknown class folder"):
        prompt_names(eurosat, list(eurosat.classes), {"Sea Lake": "x"})


@pytest.mark.parametrize("alias, name", [
    ("UCMerced_LandUse", "UCMerced"), ("ucm", "UCMerced"), ("EuroSAT_RGB", "EuroSAT"),
    ("aid", "AID"), ("nwpu", "NWPU-RESISC45"), ("resisc45", "NWPU-RESISC45"),
    ("optimal31", "OPTIMAL-31"), ("WHU_RS19", "WHU-RS19"), ("patternnet", "PatternNet"),
    ("UCM_Captions", "UCM-Captions"), ("rsicd", "RSICD"), ("rsitmd", "RSITMD"),
    ("Sydney_captions", "Sydney-Captions"),
])
def test_aliases(alias, name):
    assert get_spec(alias).name == name


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError) as err:
        get_spec("ImageNet")
    for name in ("UCMerced", "AID", "RSSCN7", "EuroSAT", "UCM-Captions", "RSICD", "AID-holdout"):
        assert name in str(err.value)


@pytest.mark.parametrize("name, n_classes, total", [
    ("UCMerced", 21, 2100), ("AID", 30, 10000), ("RSSCN7", 7, 2800), ("EuroSAT", 10, 27000),
    ("NWPU-RESISC45", 45, 31500), ("OPTIMAL-31", 31, 1860), ("PatternNet", 38, 30400),
    ("WHU-RS19", 19, None),
])
def test_official_classes_and_counts(name, n_classes, total):
    spec = get_spec(name)
    assert len(spec.classes) == len(set(spec.classes)) == n_classes
    assert spec.total == total
    if spec.counts is not None:
        assert set(spec.counts) == set(spec.classes)
    assert spec.citation and spec.licence


def test_aid_official_counts_from_readme():
    aid = get_spec("AID")
    assert aid.counts["BaseballField"] == 220 and aid.counts["Pond"] == 420
    assert aid.counts["Industrial"] == 390


def test_names_and_aliases_are_unambiguous():
    keys = {}
    for spec in registry.SPECS.values():
        for key in {registry.normalise(spec.name), *(registry.normalise(a) for a in spec.aliases)}:
            assert keys.setdefault(key, spec.name) == spec.name, key
