"""Differential privacy for the shared prompt (fedrs.federated.dp): clipping bounds the norm, the
noise has the configured scale (statistical checks with fixed seeds), the accountant's epsilon
grows with rounds and shrinks with noise, and only the shared tensors enter the DP path (a
private tensor is refused; a client's private state is untouched by DP)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedrs.backbone.factory import create_backbone
from fedrs.config import ConfigError
from fedrs.errors import FedrsError
from fedrs.federated import ClientData, ClientResult, LocalTrainConfig, client_update, dp
from fedrs.methods import create_method
from fedrs.runs import PrivacyConfig, run_config

CENTRAL = PrivacyConfig(mode="central", clip_norm=0.5, noise_multiplier=1.2, delta=1e-5)
LOCAL = PrivacyConfig(mode="local", clip_norm=0.5, noise_multiplier=1.2, delta=1e-5)


def shared(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"text_shared": scale * torch.randn(4, 64, generator=gen),
            "visual_shared": scale * torch.randn(2, 32, generator=gen)}


# --- the config section ----------------------------------------------------------------------------

def test_privacy_section_is_typed_and_checked():
    cfg = run_config({"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"},
                      "privacy": {"mode": "central", "clip_norm": 0.1, "noise_multiplier": 2, "delta": "1e-6"}})
    assert cfg.privacy == PrivacyConfig("central", 0.1, 2.0, 1e-6)
    assert run_config({"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}}).privacy.mode == "none"
    for bad, match in (({"mode": "global"}, "must be one of"), ({"clip_norm": 0}, "clip_norm must be > 0"),
                       ({"noise_multiplier": -1}, "noise_multiplier must be >= 0"), ({"delta": 1}, "delta"),
                       ({"epsilon": 1}, "unknown key")):
        with pytest.raises(ConfigError, match=match):
            run_config({"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}, "privacy": bad})


# --- clipping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1e-3, 0.1, 10.0])
def test_clipping_bounds_the_norm_and_keeps_the_direction(scale):
    update = shared(1, scale)
    clipped = dp.clip(update, 0.5)
    norm = dp.l2_norm(update)
    assert dp.l2_norm(clipped) <= 0.5 + 1e-12
    assert dp.l2_norm(clipped) == pytest.approx(min(norm, 0.5), rel=1e-12)
    ratio = {k: (clipped[k] / update[k].double()).flatten() for k in update}
    values = torch.cat(list(ratio.values()))
    assert torch.allclose(values, values[0].expand_as(values), rtol=1e-12)  # one factor for every tensor
    assert dp.l2_norm(dp.clip({"x": torch.zeros(3)}, 0.5)) == 0.0


def test_central_dp_clips_each_client_and_averages_with_equal_weights():
    before = shared(0)
    far = {k: v + 100.0 for k, v in before.items()}  # an update far beyond the clip norm
    near = {k: v + 1e-4 for k, v in before.items()}
    results = [ClientResult(3, far, 1000), ClientResult(1, near, 1)]
    no_noise = PrivacyConfig(mode="central", clip_norm=0.5, noise_multiplier=0.0)
    out = dp.apply_central_dp(before, before, results, no_noise, dp.noise_generator(0))
    expected = {k: (dp.clip(dp.update_of(before, far), 0.5)[k] + dp.update_of(before, near)[k]) / 2 for k in before}
    assert set(out) == set(before) and all(out[k].dtype == torch.float32 for k in out)
    for k in before:
        assert torch.allclose(out[k].double() - before[k].double(), expected[k], atol=1e-6)
    # one client's influence on the mean is at most C / m, whatever its number of examples
    assert dp.l2_norm(dp.update_of(before, out)) <= 0.5 + 1e-5


def test_without_dp_the_aggregate_passes_unchanged():
    before, plain = shared(0), shared(5)
    results = [ClientResult(0, shared(6), 3)]
    for cfg in (PrivacyConfig(), LOCAL):
        out = dp.apply_central_dp(before, plain, results, cfg, dp.noise_generator(0))
        assert all(torch.equal(out[k], plain[k]) for k in plain)
    upload = shared(7)
    for cfg in (PrivacyConfig(), CENTRAL):
        assert all(torch.equal(dp.client_dp(before, upload, cfg, dp.noise_generator(0))[k], upload[k]) for k in upload)


# --- noise scale -------------------------------------------------------------------------------------

def big_zero_update() -> dict[str, torch.Tensor]:
    return {"a": torch.zeros(200, 50), "b": torch.zeros(5000)}  # 15000 coordinates


def test_central_noise_has_std_z_c_over_m():
    before = big_zero_update()
    m = 4
    results = [ClientResult(k, dict(before), 10 * (k + 1)) for k in range(m)]  # every update 0
    out = dp.apply_central_dp(before, before, results, CENTRAL, dp.noise_generator(123))
    noise = torch.cat([out[k].double().flatten() for k in sorted(out)])
    expected = CENTRAL.noise_multiplier * CENTRAL.clip_norm / m  # 0.15
    assert dp.central_noise_std(CENTRAL, m) == pytest.approx(expected)
    # 15000 draws: the sample std is within 3 % (about 5 standard errors) and the mean near 0
    assert float(noise.std()) == pytest.approx(expected, rel=0.03)
    assert abs(float(noise.mean())) < 5 * expected / math.sqrt(noise.numel())
    again = dp.apply_central_dp(before, before, results, CENTRAL, dp.noise_generator(123))
    assert all(torch.equal(out[k], again[k]) for k in out)  # the seed fixes the noise
    other = dp.apply_central_dp(before, before, results, CENTRAL, dp.noise_generator(124))
    assert not torch.equal(out["a"], other["a"])


def test_local_noise_has_std_z_c_and_is_secret_without_a_seed():
    before = big_zero_update()
    out = dp.client_dp(before, dict(before), LOCAL, dp.noise_generator(7))
    noise = torch.cat([out[k].double().flatten() for k in sorted(out)])
    assert float(noise.std()) == pytest.approx(LOCAL.noise_multiplier * LOCAL.clip_norm, rel=0.03)
    a = dp.client_dp(before, dict(before), LOCAL, dp.noise_generator())
    b = dp.client_dp(before, dict(before), LOCAL, dp.noise_generator())
    assert not torch.equal(a["a"], b["a"])  # OS randomness: not reproducible by the server


def test_local_dp_upload_is_a_clipped_update_plus_noise():
    before, upload = shared(0), shared(1)  # an update of norm ~ 20, clipped to 0.5
    out = dp.client_dp(before, upload, LOCAL, dp.noise_generator(3))
    noise = dp.gaussian_noise(before, dp.local_noise_std(LOCAL), dp.noise_generator(3))
    clipped = dp.clip(dp.update_of(before, upload), LOCAL.clip_norm)
    for k in before:
        assert torch.allclose(out[k].double(), before[k].double() + clipped[k] + noise[k], atol=1e-5)


# --- the accountant ----------------------------------------------------------------------------------

def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    eps = [dp.epsilon_spent(CENTRAL, 10, 10, r) for r in (1, 2, 5, 20)]
    assert eps[0] > 0 and all(a < b for a, b in zip(eps, eps[1:]))
    by_noise = [dp.epsilon_spent(PrivacyConfig("central", 1.0, z), 10, 10, 10) for z in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:]))
    # sampling fewer clients per round amplifies privacy; a larger delta costs less epsilon
    assert dp.epsilon_spent(CENTRAL, 10, 3, 10) < dp.epsilon_spent(CENTRAL, 10, 10, 10)
    assert dp.epsilon_spent(PrivacyConfig("central", 0.5, 1.2, 1e-3), 10, 10, 10) < eps[-2] * 10 / 5
    # with every client sampled, central and local DP compose the same Gaussian mechanism
    assert dp.epsilon_spent(LOCAL, 10, 3, 5) == pytest.approx(dp.epsilon_spent(CENTRAL, 10, 10, 5))
    assert dp.epsilon_spent(CENTRAL, 10, 10, 0) == 0.0
    assert dp.epsilon_spent(PrivacyConfig(), 10, 10, 5) is None
    assert dp.epsilon_spent(PrivacyConfig("central", 1.0, 0.0), 10, 10, 1) == math.inf


def test_epsilon_matches_flowers_own_rdp_accountant():
    """The same backend as Flower's RdpAccountant: identical numbers for the Gaussian mechanism."""
    pytest.importorskip("flwr")
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting import (
        PrivacyConfig as FlowerPrivacy,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    for sampling, m in ((SamplingMethod.NO_AMPLIFICATION, 10), (SamplingMethod.POISSON, 3)):
        acc = RdpAccountant(FlowerPrivacy(1e-5, 10, NeighboringRelation.ADD_OR_REMOVE_ONE, sampling))
        acc.compose(GaussianPrivacyEvent(1.2, m, 10), 7)
        assert dp.epsilon_spent(CENTRAL, 10, m, 7) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)


def test_privacy_summary_reports_the_last_epsilon():
    history = [{"round": 0, "epsilon": 0.0}, {"round": 1, "epsilon": 2.5}, {"round": 2, "epsilon": 3.5}]
    summary = dp.privacy_summary(CENTRAL, history)
    assert summary["epsilon"] == 3.5 and summary["mode"] == "central" and summary["delta"] == 1e-5
    assert dp.privacy_summary(PrivacyConfig(), history) == {"mode": "none"}


# --- private tensors stay out ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def method():
    backbone = create_backbone("fedrs-rsclip-tiny", pretrained="random")
    return create_method({"name": "fedrsclip"}, backbone, ["airplane", "beach", "forest"])


def test_private_tensors_are_refused_by_the_dp_path(method):
    before = method.initial_global()
    private = method.initial_private(0)
    assert set(before) == set(method.upload_names) and set(private).isdisjoint(before)
    leaky = {**before, **private}
    with pytest.raises(FedrsError, match="only the shared tensors"):
        dp.client_dp(before, leaky, LOCAL, dp.noise_generator(0))
    with pytest.raises(FedrsError, match="only the shared tensors"):
        dp.apply_central_dp(before, before, [ClientResult(0, leaky, 4)], CENTRAL, dp.noise_generator(0))


def test_local_dp_touches_only_the_upload_never_the_private_state(method):
    n = 12
    gen = torch.Generator().manual_seed(0)
    data = ClientData(0, torch.arange(n) % 3, torch.arange(n), torch.arange(n),
                      features=torch.randn(n, method.backbone.embed_dim, generator=gen),
                      images=torch.randn(n, 3, 32, 32, generator=gen))
    before = method.initial_global()
    result = client_update(method, before, method.initial_private(0), data,
                           LocalTrainConfig(lr=0.05, batch_size=4, seed=1))
    kept = {k: v.clone() for k, v in result.client_state.items()}
    noised = dp.client_dp(before, result.shared, LOCAL, dp.noise_generator(1))
    assert set(noised) == set(method.upload_names)
    assert not torch.equal(noised["text_shared"], result.shared["text_shared"])
    assert all(torch.equal(result.client_state[k], kept[k]) for k in kept)
    assert np.isfinite(dp.l2_norm(dp.update_of(before, noised)))


def test_central_dp_needs_the_mean_aggregation():
    base = {"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}, "privacy": {"mode": "central"}}
    with pytest.raises(ConfigError, match="train.aggregation must be mean"):
        run_config({**base, "train": {"aggregation": "median"}})
    assert run_config({**base, "privacy": {"mode": "local"},
                       "train": {"aggregation": "median"}}).privacy.mode == "local"
