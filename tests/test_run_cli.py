"""``fedrs run`` and ``fedrs describe`` through ``fedrs.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_federated import make_dataset, tiny_config

import fedrs.classification as classification
from fedrs.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_yaml(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(train={"rounds": 2})))
    return path


def test_describe_paper_config_uploads_2048_values(capsys):
    assert main(["describe", str(REPO / "params/paper/fedrsclip_ucmerced.yaml"), "--no-weights"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["upload_values_per_client_round"] == 2048
    assert out["uploaded_tensors"] == {"text_shared": [4, 512]}
    assert out["built_with"] == "ViT-B-16/random-init" and out["num_classes"] == 21


@pytest.mark.parametrize("n_ctx", [8, 16])
def test_describe_prompt_length_and_trainable_params(tiny_yaml, capsys, n_ctx):
    assert main(["describe", str(tiny_yaml), "--set", f"method.n_ctx={n_ctx}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["upload_values_per_client_round"] == n_ctx * 64
    assert out["trainable_params"] == 2 * n_ctx * 64 + 2 * 2 * 64  # text P_s, P_p + visual V_s, V_p
    assert set(out["private_tensors"]) == {"text_private", "visual_shared", "visual_private"}


def test_run_through_the_cli(tiny_yaml, tmp_path, monkeypatch, capsys):
    synth = make_dataset(tmp_path / "img")
    monkeypatch.setattr(classification, "load_datasets", lambda data_cfg: [synth])
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["run", str(tiny_yaml), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "fedrsclip" and summary["upload_values_per_client_round"] == 256
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rounds"] == 2 and 0 <= metrics["global_accuracy"] <= 1
    assert yaml.safe_load((out / "params.yaml").read_text())["train"]["rounds"] == 2
    assert {"git_commit", "torch", "open_clip", "host"} <= set(json.loads((out / "env.json").read_text()))
    # a finished folder is reused, not re-run; other parameters are refused
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(tiny_yaml), "--out", str(out), "--no-progress"]) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["run", str(tiny_yaml), "--out", str(out), "--set", "train.rounds=1"]) == 2
    assert "finished run with other parameters" in capsys.readouterr().err


def test_bad_config_is_one_line_naming_key_and_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_config(method={"lambda_dpa": "high"})))
    assert main(["describe", str(path), "--no-weights"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "method.lambda_dpa: expected a number" in err and err.count("\n") == 1


def test_describe_does_not_warn_about_the_random_weights_it_asked_for(tiny_yaml):
    """Every sweep log used to show open_clip's "No pretrained weights loaded ... initialized
    randomly" from the run notebook's describe call; fedrs asks for random weights on purpose."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fedrs.cli", "describe", str(tiny_yaml), "--no-weights"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "initialized randomly" not in done.stdout + done.stderr
    assert "WARNING:root" not in done.stderr  # and no stderr handler was installed on the root logger


def test_a_run_whose_final_metrics_are_not_finite_fails_without_metrics_json(tiny_yaml, tmp_path, monkeypatch, capsys):
    synth = make_dataset(tmp_path / "img")
    monkeypatch.setattr(classification, "load_datasets", lambda data_cfg: [synth])
    monkeypatch.setenv("FEDRS_CACHE", str(tmp_path / "cache"))
    real = classification.summarise
    monkeypatch.setattr(classification, "summarise",
                        lambda *a, **k: {**real(*a, **k), "final_train_loss": float("nan")})
    out = tmp_path / "run"
    assert main(["run", str(tiny_yaml), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error: ") and "final_train_loss is nan" in err and "Traceback" not in err
    assert not (out / "metrics.json").exists() and (out / "checkpoint.pt").is_file()  # kept: the rounds ran
