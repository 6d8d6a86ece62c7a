"""Numbers in configuration files: non-finite ones are refused naming the key; ``1e-3`` is a float.

PyYAML (YAML 1.1) reads ``.inf`` and ``.nan`` as floats, which used to pass validation (a run with
``train.lr: .inf`` trained to NaN and exited 0), and reads ``1e-3`` as the string "1e-3", which
used to be refused as "expected a number".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedrs.config import ConfigError, NonFiniteNumberError, from_dict, load_config, parse_overrides
from fedrs.runs import RunConfig, load_run_config

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "params/paper/fedrsclip_ucmerced.yaml"


def _run_yaml(tmp_path: Path, dotted: str, literal: str) -> Path:
    """The paper's run config with ``dotted`` set to the YAML text ``literal`` (written verbatim)."""
    data = yaml.safe_load(PAPER.read_text())
    section, key = dotted.split(".")
    data[section][key] = "__VALUE__"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False).replace("__VALUE__", literal))
    return path


def _value(cfg: RunConfig, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


REFUSED_NON_FINITE = [
    ("train.lr", ".inf"),
    ("train.lr", "-.inf"),
    ("train.lr", ".nan"),
    ("train.lr", ".NaN"),
    ("train.lr", "1.0e+400"),        # a YAML float that overflows to inf
    ("train.lr", "1e400"),           # a string (no dot) that reads as inf
    ("train.lr", "'inf'"),           # a quoted string
    ("train.momentum", ".nan"),      # nan >= 0 is False, but the message must say "finite"
    ("train.sample_fraction", ".inf"),
    ("data.alpha", ".inf"),
    ("data.test_fraction", ".nan"),
    ("method.lambda_dpa", ".nan"),   # the method section is untyped until the method is known
    ("method.lambda_cma", "-.inf"),
]


@pytest.mark.parametrize("dotted, literal", REFUSED_NON_FINITE)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, dotted, literal):
    path = _run_yaml(tmp_path, dotted, literal)
    with pytest.raises(NonFiniteNumberError) as err:
        load_run_config(path)
    message = str(err.value)
    assert dotted in message and "must be a finite number" in message
    assert str(path) in message
    assert isinstance(err.value, ConfigError)


ACCEPTED_AS_FLOAT = [
    ("train.lr", "1e-3", 1e-3),
    ("train.lr", "5E-4", 5e-4),
    ("train.lr", "+2e-3", 2e-3),
    ("train.lr", "'0.01'", 0.01),
    ("train.lr", "3", 3.0),
    ("train.weight_decay", "1e-4", 1e-4),
    ("data.alpha", "1e2", 100.0),
    ("method.lambda_dpa", "5e-1", 0.5),
    ("method.cma_temperature", "7e-2", 0.07),  # Optional[float]
]


@pytest.mark.parametrize("dotted, literal, expected", ACCEPTED_AS_FLOAT)
def test_numbers_yaml_reads_as_strings_are_floats(tmp_path, dotted, literal, expected):
    cfg = load_run_config(_run_yaml(tmp_path, dotted, literal))
    value = _value(cfg, dotted)
    assert type(value) is float and value == pytest.approx(expected)


STILL_REFUSED = [
    ("train.lr", "fast", "expected a number"),
    ("train.lr", "'1e-3x'", "expected a number"),
    ("train.lr", "true", "expected a number"),
    ("train.rounds", ".inf", "expected an integer"),
    ("train.rounds", "1e3", "expected an integer"),  # no silent float -> int
    ("train.lr", "-1e-3", "out of range"),           # parsed, then range-checked as before
]


@pytest.mark.parametrize("dotted, literal, message", STILL_REFUSED)
def test_other_bad_numbers_are_still_refused(tmp_path, dotted, literal, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_run_config(_run_yaml(tmp_path, dotted, literal))
    assert dotted.split(".")[1] in str(err.value)


@pytest.mark.parametrize("pair, expected", [("train.lr=1e-3", 1e-3), ("train.lr=.inf", None),
                                            ("train.lr=nan", None)])
def test_command_line_overrides_follow_the_same_rules(pair, expected):
    overrides = parse_overrides([pair])
    if expected is None:
        with pytest.raises(NonFiniteNumberError, match="train.lr"):
            load_run_config(PAPER, overrides)
    else:
        assert load_run_config(PAPER, overrides).train.lr == pytest.approx(expected)


@dataclass
class _Inner:
    scale: float = 1.0


@dataclass
class _Example:
    inner: _Inner = field(default_factory=_Inner)
    weights: list[float] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    limit: float | None = None


@pytest.mark.parametrize("data, where", [
    ({"inner": {"scale": math.inf}}, "inner.scale"),
    ({"weights": [1.0, math.nan]}, "weights[1]"),
    ({"extras": {"a": {"b": [0.5, -math.inf]}}}, "extras.a.b[1]"),
    ({"limit": math.nan}, "limit"),
])
def test_nested_non_finite_values_name_their_place(data, where):
    with pytest.raises(NonFiniteNumberError) as err:
        from_dict(_Example, data, "example.yaml")
    assert where in str(err.value)


def test_load_config_reads_1e_minus_3_as_a_float(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text("inner:\n  scale: 1e-3\nweights: [1e-1, 2]\nlimit: 1E+2\n")
    cfg = load_config(_Example, path)
    assert cfg.inner.scale == 1e-3 and cfg.weights == [0.1, 2.0] and cfg.limit == 100.0
