"""params/studies: generated files are current, load as run configs, and the report recognises them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedrs.study import vocabulary

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "params" / "studies"
FILES = sorted(p for p in STUDIES.rglob("*.yaml") if not any(s.startswith("_") for s in p.relative_to(STUDIES).parts))


def test_generated_files_equal_the_generator():
    out = subprocess.run([sys.executable, str(REPO / "params" / "make_studies.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(STUDIES).as_posix())
def test_every_params_file_is_a_valid_run_config(path):
    from fedrs.runs import load_run_config

    cfg = load_run_config(path)
    assert cfg.name == path.stem


def test_study_folders_hold_what_their_tables_need():
    def variants(folder):
        return {vocabulary.variant_of(yaml.safe_load(p.read_text())["method"])
                for p in (STUDIES / "offline" / folder).glob("*.yaml")}

    assert variants("methods") == {"full"}
    assert variants("constraints") == set(vocabulary.ABLATION_VARIANTS) - {"full"}
    lengths = {yaml.safe_load(p.read_text())["method"]["n_ctx"] for p in (STUDIES / "offline" / "prompt_length").glob("*.yaml")}
    assert lengths | {vocabulary.DEFAULT_PROMPT_LENGTH} == set(vocabulary.PROMPT_LENGTHS)
    methods = {yaml.safe_load(p.read_text())["method"]["name"] for p in (STUDIES / "offline" / "methods").glob("*.yaml")}
    assert methods == set(vocabulary.METHOD_LABELS)
