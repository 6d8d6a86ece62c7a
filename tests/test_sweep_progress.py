"""A sweep's progress and time left: the cost model's estimates of the runs left, calibrated on the
measured wall times of the finished runs (this sweep's and those already complete on disk), shared
by the parallel jobs; in the log lines, the summary and its JSON."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml
from test_study_sweep import FAKE_WALL_TIME_S, write_fake_notebook, write_params

from fedrs.study import sweep as sw
from fedrs.study.cost import (
    RunEstimate,
    TimeLeft,
    calibration_ratio,
    estimate_run_seconds,
    format_duration,
    kind_of,
    time_left,
)


@pytest.fixture(autouse=True)
def no_inputs(monkeypatch) -> None:
    """No data import or pretraining: the stand-in notebook reads neither."""
    monkeypatch.setattr(sw, "ensure_inputs", lambda configs: None)


@pytest.fixture
def fake_notebook(tmp_path):
    return write_fake_notebook(tmp_path / "fake_run.ipynb")


def test_time_left_is_the_calibrated_estimate_shared_by_the_jobs():
    # uncalibrated: the estimates as they are, over 2 jobs
    left = time_left([100.0, 300.0, 200.0], [], jobs=2, done=0, total=3)
    assert left.seconds == pytest.approx(300.0) and left.ratio == 1.0 and left.calibrated_on == 0
    assert left.text() == "0/3 runs done, ~5 min left (uncalibrated estimate)"
    # two finished runs took 1.5x their estimates in total (ratio of the sums, not mean of ratios)
    finished = [(100.0, 100.0), (300.0, 500.0)]
    assert calibration_ratio(finished) == pytest.approx(1.5)
    left = time_left([1800.0, 1800.0, 1800.0, 1800.0], finished, jobs=2, done=2, total=6)
    assert left.seconds == pytest.approx(4 * 1800 * 1.5 / 2)
    assert left.text() == "2/6 runs done, ~1.5 h left (estimate x1.5 calibrated on 2 runs)"
    # never less than the longest run left, however many jobs
    assert time_left([100.0, 1000.0], [], jobs=8, done=0, total=2).seconds == pytest.approx(1000.0)
    # a running run's elapsed time is taken off its own estimate (not below 0)
    assert time_left([600.0, 60.0], [], jobs=1, done=0, total=2, elapsed=[200.0, 500.0]).seconds == \
        pytest.approx(400.0)
    # done: nothing left
    done = time_left([], finished, jobs=2, done=6, total=6)
    assert done.seconds == 0 and done.text() == "6/6 runs done"
    assert done.to_dict() == {"done": 6, "total": 6, "seconds_left": 0.0, "ratio": 1.5, "calibrated_on": 2,
                              "jobs": 2, "by_kind": {"other": {"ratio": 1.5, "runs": 2}}}  # plain numbers: one kind


def test_time_left_calibrates_each_kind_of_run_on_its_own():
    """Zero-shot runs (evaluation only) come in far below their estimates: their ratio must not
    scale the training runs left (one overall ratio once said ~85 s left for hours of runs)."""
    image, text, zero = (lambda s: RunEstimate(s, "image")), (lambda s: RunEstimate(s, "text")), \
        (lambda s: RunEstimate(s, "zeroshot"))
    zeroshot_done = [(zero(100.0), 1.3)] * 3  # ratio 0.013
    # no training run finished yet: the training runs left stay uncalibrated (1.0), the zero-shot one is scaled
    left = time_left([image(1000.0), text(100.0), zero(100.0)], zeroshot_done, jobs=1, done=3, total=6)
    assert left.seconds == pytest.approx(1000.0 + 100.0 + 1.3)
    assert left.ratio == pytest.approx(0.013) and left.calibrated_on == 3  # the overall ratio, as reported
    assert [(k.kind, k.runs) for k in left.by_kind] == [("image", 0), ("text", 0), ("zeroshot", 3)]
    assert left.basis() == ("estimate calibrated per kind of run on 3 runs: image encoder x1 (no run yet), "
                            "text prompts x1 (no run yet), zero-shot x0.013 (3 runs)")
    # a text run took 2x its estimate: text runs are scaled by 2, and so is the image kind, which has no
    # finished run yet (the training runs' ratio; zero-shot runs are left out of it)
    finished = zeroshot_done + [(text(100.0), 200.0)]
    left = time_left([image(1000.0), text(100.0)], finished, jobs=1, done=4, total=6)
    assert left.seconds == pytest.approx(2 * 1000.0 + 2 * 100.0)
    assert {k.kind: (k.ratio, k.runs) for k in left.by_kind} == {
        "image": (pytest.approx(2.0), 0), "text": (pytest.approx(2.0), 1), "zeroshot": (pytest.approx(0.013), 3)}
    # each kind with finished runs by its own ratio of sums
    finished += [(image(1000.0), 1500.0), (image(3000.0), 4500.0)]
    left = time_left([image(1000.0), text(100.0), zero(100.0)], finished, jobs=1, done=6, total=9)
    assert left.seconds == pytest.approx(1.5 * 1000.0 + 2 * 100.0 + 1.3)
    assert "measured x" in left.calibration_text() and "image encoder x1.5 (2 runs)" in left.calibration_text()
    assert left.to_dict()["by_kind"] == {"image": {"ratio": 1.5, "runs": 2}, "text": {"ratio": 2.0, "runs": 1},
                                         "zeroshot": {"ratio": 0.013, "runs": 3}}


def test_estimates_know_their_kind_of_run():
    def cfg(**method):
        return {"data": {"dataset": "UCMerced"}, "method": method, "train": {"rounds": 4}}

    kinds = [kind_of(estimate_run_seconds(cfg(**m))) for m in (
        {"name": "fedrsclip"}, {"name": "fedrsclip", "visual_prompts": False}, {"name": "promptfl", "visual_tokens": 4},
        {"name": "promptfl"}, {"name": "local"}, {"name": "fedotp"}, {"name": "fedotp", "matching": "ensemble"},
        {"name": "zeroshot"})]
    assert kinds == ["image", "text", "image", "text", "text", "transport", "text", "zeroshot"]
    est = estimate_run_seconds(cfg(name="fedrsclip"))
    assert isinstance(est, float) and type(est + 1.0) is float and kind_of(2.0) is None
    assert pickle.loads(pickle.dumps(est)) == est and pickle.loads(pickle.dumps(est)).kind == "image"
    assert json.loads(json.dumps({"s": est}))["s"] == float(est)


def _parts(cfg: dict) -> tuple[float, float, float]:
    """Setup, one round's training and one evaluation's seconds of ``cfg`` as the cost model adds
    them up (UC Merced, so no image scaling)."""
    from fedrs.study import cost

    round_s = cost.ROUND_SECONDS[cost.run_kind(cfg)]
    return (cost.SETUP_SECONDS, round_s * (1 - cost.EVAL_SHARE) * cost.train_image_fraction(cfg),
            round_s * cost.EVAL_SHARE * cost.evaluation_fraction(cfg))


@pytest.mark.parametrize("method", ["fedrsclip", "promptfl"])
def test_generalisation_settings_are_costed_by_what_they_train_and_score(method):
    def cfg(**data):
        return {"data": {"dataset": "UCMerced", "num_clients": 10, **data}, "method": {"name": method},
                "train": {"rounds": 40}, "eval": {"every": 2}}

    plain, b2n, unseen = cfg(), cfg(class_split="base-to-novel"), cfg(unseen_clients=2)
    setup, train, evaluation = _parts(plain)
    evaluations = 40 // 2 + 1
    assert estimate_run_seconds(plain) == pytest.approx(setup + 40 * train + evaluations * evaluation)
    # base-to-novel trains on the base classes' images only (11 of UC Merced's 21 classes) and
    # scores base and novel test images, personalised and global: a whole evaluation
    assert _parts(b2n) == pytest.approx((setup, train * 11 / 21, evaluation))
    assert estimate_run_seconds(b2n) == pytest.approx(setup + 40 * train * 11 / 21 + evaluations * evaluation)
    # 2 clients that never train hold 2/12 of the images: 10/12 train; the global model scores their
    # test splits besides the pooled test set while the personalised evaluation covers 10/12 of the clients'
    assert _parts(unseen) == pytest.approx((setup, train * 10 / 12, evaluation))
    assert estimate_run_seconds(unseen) < estimate_run_seconds(plain)
    # both with 16 shots: the few-shot cap counts the base classes only
    few = cfg(class_split="base-to-novel", few_shot=16)
    assert _parts(few)[1] == pytest.approx(train * min(11 / 21, 16 * 11 * 10 / (0.8 * 2100)))


def test_format_duration():
    assert [format_duration(s) for s in (12, 600, 3 * 3600)] == ["12 s", "10 min", "3.0 h"]


def test_a_resumed_run_is_estimated_from_its_next_round():
    cfg = {"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}, "train": {"rounds": 40},
           "eval": {"every": 2}}
    whole = estimate_run_seconds(cfg)
    assert estimate_run_seconds(cfg, done_rounds=0) == whole
    half, setup_only = estimate_run_seconds(cfg, done_rounds=20), estimate_run_seconds(cfg, done_rounds=40)
    assert setup_only < half < whole
    # the rounds left cost what the rounds done did: setup + 2 x (half - setup) = whole, up to the
    # evaluation of round 0, which a resumed run does not repeat
    assert 2 * half - setup_only == pytest.approx(whole, rel=0.02)


def test_finished_rounds_and_measured_seconds_come_from_the_run_folder(tmp_path):
    assert sw.finished_rounds(tmp_path) == 0 and sw.measured_seconds(tmp_path) is None
    (tmp_path / "rounds.csv").write_text("round,global_acc\n0,0.1\n1,\n2,0.3\n")
    assert sw.finished_rounds(tmp_path) == 2
    (tmp_path / "sweep.json").write_text(json.dumps({"status": "complete", "seconds": 42.0}))
    assert sw.measured_seconds(tmp_path) == 42.0  # no metrics.json: the sweep's record
    (tmp_path / "metrics.json").write_text(json.dumps({"wall_time_s": 12.5}))
    assert sw.measured_seconds(tmp_path) == 12.5  # the run's own measurement first


def estimates(*paths) -> list[float]:
    return [estimate_run_seconds(yaml.safe_load(p.read_text())) for p in paths]


def test_sweep_calibrates_on_its_runs_and_on_the_complete_runs_on_disk(tmp_path, fake_notebook, capsys):
    from fedrs.cli import main

    params = tmp_path / "p"
    a, b = write_params(params, "a", seed=0), write_params(params, "b", seed=1, data={"dataset": "EuroSAT"})
    results = tmp_path / "r"
    argv = ["sweep", str(params), "--results", str(results), "--notebook", str(fake_notebook), "--no-progress",
            "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # before the start: the cost model alone; one log line per finished run
    first = estimates(a, b)
    assert f"sweep: 2 runs, 2 to execute (local, 1 at once): 0/2 runs done, ~{format_duration(sum(first))} " \
           f"left (uncalibrated estimate)" in out
    ratio = 2 * FAKE_WALL_TIME_S / sum(first)
    assert f"1/2 runs done, ~{format_duration(first[1] * FAKE_WALL_TIME_S / first[0])} left (estimate " \
           f"x{FAKE_WALL_TIME_S / first[0]:.2g} calibrated on 1 run)" in out
    assert "p/b: 2/2 runs done\n" in out
    assert f"time: ~{format_duration(sum(first))} estimated at the start (uncalibrated estimate)" in out
    assert f"measured x{ratio:.2g} the cost model's estimate over 2 runs" in out
    summary = json.loads(out[out.index("{"):])
    assert summary["executor"] == "local"
    assert summary["estimate"] == {"done": 0, "total": 2, "seconds_left": round(sum(first), 1), "ratio": 1.0,
                                   "calibrated_on": 0, "jobs": 1,
                                   "by_kind": {"image": {"ratio": 1.0, "runs": 0}}}  # FedRSCLIP: one kind
    assert summary["progress"]["calibrated_on"] == 2 and summary["progress"]["ratio"] == pytest.approx(ratio, 1e-3)

    # a later sweep of the same study plus one new run starts calibrated on the two complete runs
    c = write_params(params, "c", seed=2)
    summary = sw.sweep([params], results=results, notebook=fake_notebook, progress=False)
    assert summary.count("skipped") == 2 and summary.count("done") == 1
    assert summary.estimate == TimeLeft(2, 3, pytest.approx(estimates(c)[0] * ratio), pytest.approx(ratio), 2, 1)
    assert summary.progress.calibrated_on == 3


def test_a_resumed_run_is_estimated_from_the_rounds_it_has_left(tmp_path, fake_notebook):
    path = write_params(tmp_path / "p", "a", train={"seed": 0, "rounds": 10})
    spec = sw.plan([path], results=tmp_path / "r")[0]
    spec.out_dir.mkdir(parents=True)
    (spec.out_dir / "rounds.csv").write_text("round\n" + "\n".join(str(r) for r in range(8)) + "\n")  # 0..7
    summary = sw.sweep([path], results=tmp_path / "r", notebook=fake_notebook, progress=False)
    assert summary.outcomes[0].resumed
    cfg = yaml.safe_load(path.read_text())
    assert summary.estimate.seconds == pytest.approx(estimate_run_seconds(cfg, done_rounds=7))
    assert summary.estimate.seconds < estimate_run_seconds(cfg)


def test_retrieval_runs_are_a_kind_of_their_own_scaled_by_their_caption_set():
    """A PE-RSITR run is costed as retrieval (its adapter trains through both towers), calibrated on
    its own finished runs, and RSICD (about 10,000 images) costs more than UCM-Captions (2,100)."""
    from fedrs.study.cost import estimate_run_seconds, run_kind

    ucm = {"method": {"name": "pe-rsitr"}, "data": {"dataset": "UCM-Captions", "num_clients": 5},
           "train": {"rounds": 10}, "eval": {"every": 5}}
    rsicd = {**ucm, "data": {"dataset": "RSICD", "num_clients": 5}}
    assert run_kind(ucm) == "retrieval" and estimate_run_seconds(ucm).kind == "retrieval"
    assert estimate_run_seconds(rsicd) > 4 * estimate_run_seconds(ucm)
    text = {"method": {"name": "promptfl"}, "data": {"dataset": "UCMerced"}, "train": {"rounds": 10},
            "eval": {"every": 5}}
    assert estimate_run_seconds(ucm) > 5 * estimate_run_seconds(text)  # both towers against cached features
