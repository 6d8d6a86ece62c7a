"""fedrs sweep on a stand-in run notebook: skip complete, resume partial, isolate failures, --jobs,
validate every params file first, make shared inputs ready once, lock runs being executed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from fedrs.study import sweep as sw

#: the wall time every stand-in run reports in metrics.json (what a sweep calibrates its estimate on)
FAKE_WALL_TIME_S = 30.0

# A stand-in for 02_federated_run: same parameters, writes a run folder like run_experiment (its
# wall time FAKE_WALL_TIME_S), fails on request (a run named "fail"), and records whether it was
# asked to resume (calls.txt) and the GPUs and threads its kernel was given (kernel_env.json). The params files
# are real run configurations (the sweep validates them before anything runs).
FAKE_CELLS = [
    ("params_file: str = ''\nout_dir: str = ''\nresume: bool = False\nprogress: bool = True", ["parameters"]),
    ("import json, os, pathlib, yaml\n"
     "cfg = yaml.safe_load(pathlib.Path(params_file).read_text())\n"
     "out = pathlib.Path(out_dir)\n"
     "with open(out / 'calls.txt', 'a') as f:\n"
     "    f.write(f'resume={resume}\\n')\n"
     "seen = ('CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')\n"
     "(out / 'kernel_env.json').write_text(json.dumps({v: os.environ.get(v) for v in seen}))\n"
     "if cfg.get('name') == 'fail':\n"
     "    raise ValueError('deliberate failure in ' + params_file)\n"
     "(out / 'params.yaml').write_text(yaml.safe_dump(cfg))\n"
     "(out / 'metrics.json').write_text(json.dumps({'method': 'fedrsclip', 'seed': cfg['train']['seed'],\n"
     "    'personalised_accuracy': 0.5, 'global_accuracy': 0.4, 'wall_time_s': " + repr(FAKE_WALL_TIME_S) + "}))",
     []),
]


@pytest.fixture(autouse=True)
def ensured(monkeypatch) -> list:
    """The sweep's one-time input preparation, recorded instead of importing data or pretraining:
    the datasets of each call."""
    calls = []

    def record(configs):
        calls.append(sorted({c.data.dataset for c in configs}))

    monkeypatch.setattr(sw, "ensure_inputs", record)
    return calls


def write_fake_notebook(path: Path) -> Path:
    """The stand-in run notebook (:data:`FAKE_CELLS`) written to ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in FAKE_CELLS]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def fake_notebook(tmp_path) -> Path:
    return write_fake_notebook(tmp_path / "fake_run.ipynb")


def write_params(folder: Path, name: str, seed: int = 0, fail: bool = False, **extra) -> Path:
    """A valid run configuration ``folder/<name>.yaml`` (``fail``: the stand-in notebook raises)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    cfg = {"data": {"dataset": "UCMerced"}, "method": {"name": "fedrsclip"}, "train": {"seed": seed, "rounds": 1},
           **({"name": "fail"} if fail else {}), **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def calls(out: Path) -> list[str]:
    return (out / "calls.txt").read_text().split()


def test_plan_study_names_and_bases(tmp_path):
    studies = tmp_path / "params" / "studies"
    write_params(studies / "offline" / "methods", "a")
    write_params(studies / "offline" / "methods", "_base")
    write_params(tmp_path / "elsewhere", "b")
    specs = sw.plan([studies / "offline", tmp_path / "elsewhere" / "b.yaml"], results=tmp_path / "results")
    assert [(s.study, s.name) for s in specs] == [("offline/methods", "a"), ("elsewhere", "b")]
    assert specs[0].out_dir == (tmp_path / "results" / "offline" / "methods" / "a").resolve()
    assert [s.study for s in sw.plan([studies], study="x", results=tmp_path)] == ["x"]


def test_plan_rejects_clashing_runs_and_missing_files(tmp_path):
    write_params(tmp_path / "one", "a")
    write_params(tmp_path / "two", "a")
    with pytest.raises(sw.SweepError, match="would all write"):
        sw.plan([tmp_path / "one", tmp_path / "two"], study="same", results=tmp_path)
    with pytest.raises(sw.SweepError, match="no such params file"):
        sw.plan([tmp_path / "nope.yaml"])


def test_sweep_isolates_failures_skips_complete_and_resumes(tmp_path, fake_notebook, capsys):
    from fedrs.cli import main

    params = tmp_path / "params" / "studies" / "demo"
    write_params(params, "good0", seed=0)
    write_params(params, "good1", seed=1)
    write_params(params, "broken", fail=True)
    results = tmp_path / "results"
    argv = ["sweep", str(params), "--results", str(results), "--notebook", str(fake_notebook), "--no-progress"]

    # 1) jobs=2 in worker processes: one failure, reported with its log; the others complete
    assert main(argv + ["--jobs", "2"]) == 1
    out = capsys.readouterr().out
    assert "3 runs" in out and "2 done" in out and "1 failed" in out
    assert "FAILED demo/broken: ValueError: deliberate failure" in out
    broken = results / "demo" / "broken"
    assert f"log: {broken / 'sweep.log'}" in out
    assert "deliberate failure" in (broken / "sweep.log").read_text()
    assert (broken / "02_federated_run.ipynb").is_file()  # the partially executed notebook is kept
    assert json.loads((broken / "sweep.json").read_text())["status"] == "failed"
    for name in ("good0", "good1"):
        run = results / "demo" / name
        assert (run / "metrics.json").is_file() and (run / "02_federated_run.ipynb").is_file()
        assert json.loads((run / "sweep.json").read_text())["status"] == "complete"
        assert calls(run) == ["resume=False"]

    # 2) an interrupted run (folder without metrics.json) is resumed; complete runs are skipped
    (results / "demo" / "good1" / "metrics.json").unlink()
    write_params(params, "broken", seed=2)  # fixed: the failed run is retried (as a resume)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 done (2 resumed), 1 skipped (complete), 0 failed" in out
    assert calls(results / "demo" / "good0") == ["resume=False"]
    assert calls(results / "demo" / "good1") == ["resume=False", "resume=True"]
    assert calls(broken) == ["resume=False", "resume=True"]


def test_changed_params_of_a_complete_run_need_force(tmp_path, fake_notebook):
    params = tmp_path / "p"
    path = write_params(params, "a", seed=0)
    kw = dict(results=tmp_path / "r", notebook=fake_notebook, progress=False)
    assert sw.sweep([path], **kw).count("done") == 1
    write_params(params, "a", seed=5)
    summary = sw.sweep([path], **kw)
    assert summary.count("failed") == 1 and "--force" in summary.failed[0].error
    summary = sw.sweep([path], force=True, **kw)
    assert summary.count("done") == 1
    assert calls(tmp_path / "r" / "p" / "a") == ["resume=False"]  # started over from scratch


def test_committed_results_are_rerun_in_place_then_skipped(tmp_path, fake_notebook):
    """A fresh clone has the committed metrics.json but not the git-ignored sweep.json: the sweep
    executes those runs again from scratch (that is how `make study` regenerates results/), then
    skips them once this checkout has run them."""
    path = write_params(tmp_path / "p", "a", seed=0)
    out = tmp_path / "r" / "p" / "a"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"method": "fedrsclip", "seed": 0, "personalised_accuracy": 0.9}))
    (out / "stale_extra.txt").write_text("left over from the committed run")
    kw = dict(results=tmp_path / "r", notebook=fake_notebook, progress=False)
    assert sw.run_status(sw.plan([path], results=tmp_path / "r")[0]) == "committed"
    assert sw.sweep([path], **kw).count("done") == 1
    assert calls(out) == ["resume=False"]  # from scratch, not a resume
    assert json.loads((out / "metrics.json").read_text())["personalised_accuracy"] == 0.5
    assert not (out / "stale_extra.txt").exists()
    assert sw.sweep([path], **kw).count("skipped") == 1


def test_status_reports_each_study_and_the_time_left_without_executing(tmp_path, fake_notebook, ensured, capsys):
    """`fedrs sweep --status`: runs by status per study folder, measured hours against the cost
    model's, the hours left (a partial run only its rounds left, a committed one from scratch),
    and nothing validated, prepared, locked or written."""
    from fedrs.cli import main

    params = tmp_path / "params" / "studies" / "tier"
    done = write_params(params / "a", "done", seed=0, train={"seed": 0, "rounds": 4})
    write_params(params / "a", "partial", seed=1, train={"seed": 1, "rounds": 4})
    write_params(params / "b", "new", seed=1, train={"seed": 1, "rounds": 4})
    write_params(params / "b", "committed", seed=2, train={"seed": 2, "rounds": 4})
    results = tmp_path / "results"
    assert sw.sweep([done], results=results, notebook=fake_notebook, progress=False).count("done") == 1
    partial = results / "tier" / "a" / "partial"
    partial.mkdir(parents=True)
    (partial / "rounds.csv").write_text("round,val\n1,0.1\n2,0.2\n")  # interrupted after round 2 of 4
    committed = results / "tier" / "b" / "committed"
    committed.mkdir(parents=True)
    (committed / "metrics.json").write_text(json.dumps({"method": "fedrsclip", "wall_time_s": 90.0}))
    ensured.clear()
    before = sorted(p.relative_to(results) for p in results.rglob("*"))

    status = sw.sweep_status([params], results=results, jobs=2)
    by_study = {st.study: st for st in status.studies}
    assert by_study["tier/a"].counts == {"complete": 1, "committed": 0, "partial": 1, "busy": 0, "new": 0, "stale": 0}
    assert by_study["tier/b"].counts == {"complete": 0, "committed": 1, "partial": 0, "busy": 0, "new": 1, "stale": 0}
    assert by_study["tier/a"].measured_s == FAKE_WALL_TIME_S and by_study["tier/b"].measured_s == 90.0
    # same configuration, rounds 3-4 left against 1-4 twice (the committed run is executed again)
    assert 0 < by_study["tier/a"].left_core_s < by_study["tier/b"].left_core_s / 2
    assert (status.left.done, status.left.total, status.left.jobs) == (1, 4, 2)
    assert ensured == [] and sorted(p.relative_to(results) for p in results.rglob("*")) == before

    assert main(["sweep", str(params), "--results", str(results), "--status", "--jobs", "2", "--json"]) == 0
    out = capsys.readouterr().out
    assert "tier/a" in out and "tier/b" in out and "sweep status: 1/4 runs done" in out
    assert json.loads(out[out.index("{"):])["all"]["counts"]["committed"] == 1


def test_every_params_file_is_validated_before_anything_runs(tmp_path, fake_notebook, ensured, capsys):
    from fedrs.cli import main

    params = tmp_path / "p"
    write_params(params, "good")
    write_params(params, "typo", trian={"rounds": 2})
    write_params(params, "bad_lr", train={"lr": "fast"})
    results = tmp_path / "r"
    argv = ["sweep", str(params), "--results", str(results), "--notebook", str(fake_notebook), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error: 2 of 3 params files are invalid, nothing was run") and err.count("\n") == 1
    assert "typo.yaml" in err and "trian" in err and "bad_lr.yaml" in err and "train.lr" in err
    assert not results.exists() and ensured == []  # no kernel, no data import, no run folder


def test_shared_inputs_are_made_ready_once_before_the_runs(tmp_path, fake_notebook, ensured):
    params = tmp_path / "p"
    write_params(params, "a", seed=0)
    write_params(params, "b", seed=1, data={"dataset": "EuroSAT"})
    kw = dict(results=tmp_path / "r", notebook=fake_notebook, progress=False)
    assert sw.sweep([params], jobs=2, **kw).count("done") == 2
    assert ensured == [["EuroSAT", "UCMerced"]]  # once, for every run to execute
    assert sw.sweep([params], **kw).count("skipped") == 2
    assert ensured[-1] == []  # nothing to execute: nothing to prepare


@pytest.fixture
def other_process():
    """A live process on this host, standing in for another sweep's worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def lock_as(spec, pid: int) -> None:
    from fedrs.procs import process_start_time

    sw.lock_path(spec).parent.mkdir(parents=True, exist_ok=True)
    sw.lock_path(spec).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                              "start_time": process_start_time(pid)}))


def test_a_run_another_sweep_executes_is_left_alone(tmp_path, fake_notebook, other_process, capsys):
    from fedrs.cli import main

    path = write_params(tmp_path / "p", "a")
    spec = sw.plan([path], results=tmp_path / "r")[0]
    lock_as(spec, other_process.pid)
    assert sw.run_status(spec) == "busy"
    argv = ["sweep", str(path), "--results", str(tmp_path / "r"), "--notebook", str(fake_notebook), "--no-progress"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "1 busy" in out and f"BUSY p/a: being executed by pid {other_process.pid}" in out
    assert not (spec.out_dir / "calls.txt").exists()  # not executed a second time
    # the worker itself refuses too (a lock taken between the plan and the start)
    assert sw.execute_run(spec, fake_notebook, resume=False).status == "busy"
    assert json.loads(sw.lock_path(spec).read_text())["pid"] == other_process.pid  # not released by us


def test_a_stale_lock_of_a_killed_sweep_is_taken_over(tmp_path, fake_notebook):
    path = write_params(tmp_path / "p", "a")
    spec = sw.plan([path], results=tmp_path / "r")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_as(spec, dead.pid)
    assert sw.lock_owner(spec) is None and sw.run_status(spec) == "new"
    assert sw.sweep([path], results=tmp_path / "r", notebook=fake_notebook, progress=False).count("done") == 1
    assert calls(spec.out_dir) == ["resume=False"]
    assert not sw.lock_path(spec).exists() and not list(sw.lock_path(spec).parent.glob(".a.lock*"))


def test_a_run_completed_by_another_sweep_meanwhile_is_not_executed_again(tmp_path, fake_notebook):
    path = write_params(tmp_path / "p", "a")
    spec = sw.plan([path], results=tmp_path / "r")[0]
    assert sw.execute_run(spec, fake_notebook, resume=False).status == "done"
    # a second sweep planned it as new before the first finished; its worker re-checks under the lock
    assert sw.execute_run(spec, fake_notebook, resume=False).status == "skipped"
    assert calls(spec.out_dir) == ["resume=False"]


def test_sweep_marker_is_git_ignored():
    """sweep.json holds local paths and wall time, and marks runs executed in this checkout."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    probe = "results/offline/methods/some_run/sweep.json"
    out = subprocess.run(["git", "check-ignore", "-q", probe], cwd=repo)
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0, f"{probe} must be git-ignored (.gitignore)"


def test_missing_notebook_is_one_clear_error(tmp_path):
    path = write_params(tmp_path, "a")
    with pytest.raises(sw.SweepError, match="--notebook"):
        sw.sweep([path], notebook=tmp_path / "missing.ipynb", results=tmp_path / "r")


def test_help_of_both_commands():
    from fedrs.cli import build_parser

    parser = build_parser()
    for command in ("sweep", "report"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([command, "--help"])
        assert exc.value.code == 0


@pytest.mark.slow
@pytest.mark.realdata
def test_sweep_and_report_on_the_real_run_notebook(tmp_path):
    """The real 02_federated_run notebook on the smoke params (tiny backbone), then the report."""
    from fedrs.study.collect import collect_runs
    from fedrs.study.report import write_report

    smoke = sw.project_root() / "params" / "studies" / "smoke" / "fedrsclip_tiny.yaml"
    summary = sw.sweep([smoke], results=tmp_path, progress=False)
    assert not summary.failed, summary.text()
    run = tmp_path / "smoke" / "fedrsclip_tiny"
    for name in ("02_federated_run.ipynb", "params.yaml", "split.json", "rounds.csv", "metrics.json",
                 "env.json", "learning_curves.png"):
        assert (run / name).is_file(), name
    assert sw.sweep([smoke], results=tmp_path, progress=False).count("skipped") == 1
    runs = collect_runs(tmp_path)
    assert runs["backbone"].iloc[0].startswith("fedrs-rsclip-tiny/") and runs["rounds"].iloc[0] == 2
    report = write_report(tmp_path)
    assert "methods" in report.tables and (tmp_path / "figures" / "learning_curves.png").is_file()


def test_a_kernel_that_dies_before_its_first_cell_is_started_again(tmp_path, fake_notebook, monkeypatch):
    """Several runs starting at once on a loaded machine can lose a kernel before it answers (CI saw
    'Kernel died before replying to kernel_info' under --jobs 4): no cell ran, so the run starts
    another kernel, up to KERNEL_START_ATTEMPTS, and says so in its log; any other failure is not
    retried, and a kernel that never starts fails the run."""
    import papermill as pm

    real, starts = pm.execute_notebook, []

    def flaky(*args, **kw):
        starts.append(1)
        if len(starts) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kw)

    monkeypatch.setattr(pm, "execute_notebook", flaky)
    monkeypatch.setattr(sw.time, "sleep", lambda s: None)
    params = tmp_path / "params" / "studies" / "demo"
    write_params(params, "good", seed=0)
    spec = sw.plan([params], results=tmp_path / "r")[0]
    assert sw.execute_run(spec, fake_notebook, resume=False).status == "done" and len(starts) == 2
    log = (tmp_path / "r" / "demo" / "good" / "sweep.log").read_text()
    assert "the kernel did not start" in log and "attempt 2 of 3" in log and log.rstrip().endswith("s")

    def dead(*args, **kw):
        starts.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(pm, "execute_notebook", dead)
    starts.clear()
    outcome = sw.execute_run(spec, fake_notebook, resume=False, fresh=True)
    assert outcome.status == "failed" and "Kernel died" in outcome.error and len(starts) == sw.KERNEL_START_ATTEMPTS
    assert not sw.kernel_did_not_start(ValueError("Kernel died before replying to kernel_info"))
    assert not sw.kernel_did_not_start(RuntimeError("deliberate failure"))


@pytest.mark.parametrize("environ, threads, expected", [
    ({}, 2, {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}),     # the sweep's share of the cores
    ({"OMP_NUM_THREADS": "1"}, 2, {"MKL_NUM_THREADS": "1"}),       # the user's choice, for both pools
    ({"MKL_NUM_THREADS": "3"}, 2, {"OMP_NUM_THREADS": "3"}),
    ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "4"}, 2, {}),     # both set: left as the user set them
    ({}, None, {}),                                                # no share (Slurm without --slurm-cpus)
])
def test_thread_environment_keeps_both_thread_pools_at_one_value(environ, threads, expected):
    assert sw.thread_environment(threads, environ) == expected


def test_a_kernel_gets_the_users_thread_count_for_both_pools(tmp_path, fake_notebook, monkeypatch):
    """`OMP_NUM_THREADS=1 fedrs sweep ...` on 2 cores ran its kernels with MKL_NUM_THREADS=2, so
    torch used 2 threads beside other work; the kernel now sees 1 for both."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(sw.os, "cpu_count", lambda: 4)  # a share of 4 threads that must not be used
    path = write_params(tmp_path / "p", "a", seed=0)
    assert sw.sweep([path], results=tmp_path / "r", notebook=fake_notebook, jobs=1, progress=False).count("done") == 1
    seen = json.loads((tmp_path / "r" / "p" / "a" / "kernel_env.json").read_text())
    assert seen["OMP_NUM_THREADS"] == "1" and seen["MKL_NUM_THREADS"] == "1"


def _committed_run(results: Path, study: str, name: str, backbone: str) -> Path:
    """A run folder as a clone brings it: metrics.json (with its backbone label), no sweep.json."""
    out = results / study / name
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"method": "fedrsclip", "seed": 0, "personalised_accuracy": 0.9,
                                                  "backbone": backbone, "wall_time_s": 90.0}))
    return out


def _offline_checkpoint(tmp_path: Path, monkeypatch, content: bytes = b"this machine's build") -> str:
    """This machine's build of the offline default in $FEDRS_MODELS; returns the label runs get."""
    import hashlib

    models = tmp_path / "models"
    (models / "fedrs-rsclip-s").mkdir(parents=True)
    (models / "fedrs-rsclip-s" / "open_clip_model.pt").write_bytes(content)
    monkeypatch.setenv("FEDRS_MODELS", str(models))
    return f"fedrs-rsclip-s/offline-{hashlib.sha256(content).hexdigest()[:8]}"


def test_keep_committed_continues_a_committed_study_on_the_same_backbone(tmp_path, fake_notebook, monkeypatch):
    """--keep-committed: a fresh clone's committed runs count as finished (not executed again, their
    results untouched) and only the runs nobody committed execute; --status agrees."""
    label = _offline_checkpoint(tmp_path, monkeypatch)
    params = tmp_path / "p"
    committed_params = write_params(params, "a", seed=0)
    new_params = write_params(params, "b", seed=1)
    results = tmp_path / "r"
    committed = _committed_run(results, "p", "a", label)
    assert sw.offline_backbone_label("fedrs-rsclip-s") == label

    status = sw.sweep_status([params], results=results, keep_committed=True)
    assert status.left.done == 1 and status.left.total == 2
    assert sw.sweep_status([params], results=results).left.done == 0  # without: both are still to run

    summary = sw.sweep([committed_params, new_params], results=results, notebook=fake_notebook, progress=False,
                       keep_committed=True)
    assert summary.count("skipped") == 1 and summary.count("done") == 1
    assert not (committed / "calls.txt").exists()  # never executed
    assert json.loads((committed / "metrics.json").read_text())["personalised_accuracy"] == 0.9
    assert calls(results / "p" / "b") == ["resume=False"]
    assert sw.run_status(sw.plan([committed_params], results=results)[0]) == "committed"  # still the clone's


def test_keep_committed_refuses_to_mix_backbone_builds(tmp_path, fake_notebook, monkeypatch, capsys):
    """Committed runs trained on another build of the offline backbone than this machine's (another
    CPU can pretrain other bits): the sweep stops before any run, with a `fedrs: error:` line naming
    both builds, instead of adding runs on another checkpoint under the same model name."""
    from fedrs.cli import main

    here = _offline_checkpoint(tmp_path, monkeypatch)
    params = tmp_path / "p"
    write_params(params, "a", seed=0)
    write_params(params, "b", seed=1)
    results = tmp_path / "r"
    _committed_run(results, "p", "a", "fedrs-rsclip-s/offline-57543234")
    with pytest.raises(sw.SweepError, match="offline-57543234.*" + here.split("/")[1]):
        sw.sweep([params], results=results, notebook=fake_notebook, progress=False, keep_committed=True)
    assert not (results / "p" / "b").exists()

    code = main(["sweep", str(params), "--results", str(results), "--notebook", str(fake_notebook),
                 "--no-progress", "--keep-committed"])
    err = capsys.readouterr().err
    assert code != 0 and "fedrs: error: the committed runs were trained on fedrs-rsclip-s/offline-57543234" in err
    assert "Traceback" not in err and not (results / "p" / "b").exists()
    # without --keep-committed the clone's run is executed again here, on this machine's build
    assert sw.sweep([params], results=results, notebook=fake_notebook, progress=False).count("done") == 2
