"""Figures of the run notebook: which curves are drawn, labelled with the backbone."""

from __future__ import annotations

import io
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fedrs.study import plots  # noqa: E402

ROUNDS = pd.DataFrame({
    "round": [0, 1, 2],
    "personalised_acc_weighted": [0.30, 0.40, 0.50],
    "personalised_acc_unweighted": [0.28, 0.39, 0.49],
    "global_acc": [0.25, 0.25, 0.25],
    "train_ce": [None, 1.2, 0.9],
    "train_dpa": [None, 0.2, 0.1],
})


def _accuracy_lines(fig):
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


@pytest.mark.parametrize("method, has_global", [("fedrsclip", True), ("local", False), (None, True)])
def test_learning_curves_draw_global_only_for_methods_with_a_global_model(method, has_global):
    fig = plots.learning_curves(ROUNDS, "fedrs-rsclip-tiny/offline-0123abcd", "t", method=method)
    try:
        lines = _accuracy_lines(fig)
        assert (plots.ACCURACY_CURVES["global_acc"] in lines) is has_global
        weighted = lines[plots.ACCURACY_CURVES["personalised_acc_weighted"]]
        assert list(weighted.get_ydata()) == pytest.approx([30.0, 40.0, 50.0])  # percent
        assert [line.get_label() for line in fig.axes[1].get_lines()] == ["ce", "dpa"]
        assert "fedrs-rsclip-tiny/offline-0123abcd" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_importing_plots_leaves_the_global_style_alone():
    code = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
            "before = dict(plt.rcParams); import fedrs.study.plots as p; "
            "changed = sorted(k for k in before if plt.rcParams[k] != before[k]); "
            "assert not changed, changed; assert plt.rcParams['font.size'] != p.STYLE['font.size']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    return buf.getvalue()


def test_figures_render_in_the_study_style_whatever_the_global_style():
    """Made inside the style, drawn outside it (a notebook's display): the same image when the
    global style differs, although matplotlib reads tick label sizes and grid alpha when drawing."""
    fig = plots.learning_curves(ROUNDS, "fedrs-rsclip-tiny/offline-0123abcd", "t", method="fedrsclip")
    try:
        assert fig.axes[0].yaxis.label.get_fontsize() == plots.STYLE["font.size"]  # made in the style
        plain = _png(fig)
        with plt.rc_context({"font.size": 17, "grid.alpha": 1.0}):
            assert _png(fig) == plain
    finally:
        plt.close(fig)


SUMMARY = pd.DataFrame({
    "backbone": ["b"] * 3, "dataset": ["UCMerced"] * 3, "split": ["Dir(0.5)"] * 3, "clients": [10] * 3,
    "participation": [1.0] * 3, "rounds": [20] * 3, "label": ["Local-only", "PromptFL", "FedRSCLIP"],
    "personalised_acc_mean": [71.0, 62.0, 72.0], "personalised_acc_std": [1.0, 2.0, 2.0],
    "personalised_acc_diff": [-1.0, -10.0, float("nan")], "personalised_acc_diff_low": [-8.45, -10.0, float("nan")],
    "personalised_acc_diff_high": [6.45, -10.0, float("nan")],
    "personalised_acc_distinguishable": [False, True, False],
})
PROTOCOL = "10 clients, all every round · 20 rounds (last reported) · 3 seeds (0-2)"


def test_paired_differences_fill_only_intervals_that_exclude_zero():
    fig = plots.paired_differences(SUMMARY, "label", "personalised_acc", "b", "Methods", PROTOCOL)
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["PromptFL", "Local-only"]  # the reference is left out
        markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert [m.get_xdata()[0] for m in markers] == [-1.0, -10.0]
        assert [m.get_markerfacecolor() for m in markers][0] == "white"  # holds 0: open
        assert markers[1].get_markerfacecolor() != "white"               # excludes 0: filled
        title = fig._suptitle.get_text()
        assert "backbone: b" in title and PROTOCOL in title
    finally:
        plt.close(fig)


def test_study_figures_name_backbone_and_protocol():
    fig = plots.grouped_bars(SUMMARY, "label", "personalised_acc", "b", "Methods", PROTOCOL)
    try:
        assert "backbone: b" in fig._suptitle.get_text() and PROTOCOL in fig._suptitle.get_text()
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Local-only", "PromptFL", "FedRSCLIP"]
    finally:
        plt.close(fig)
    assert plots.paired_differences(SUMMARY.assign(personalised_acc_diff=float("nan")), "label",
                                    "personalised_acc", "b", "Methods") is None  # nothing paired: no figure


def test_the_run_notebook_summarises_and_plots_a_retrieval_run_by_its_recalls():
    """notebooks/02 (what `fedrs sweep` executes) on a pe-rsitr run folder: mR, not accuracies (it
    failed with KeyError 'personalised_accuracy' after a retrieval run had finished), its validation
    curve, and no per-client accuracy figure; a classification run keeps its accuracies."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from fedrs.study.plots import run_figures, run_summary

    labels = {"backbone": "fedrs-rsclip-s/offline-57543234", "dataset": "UCM-Captions", "split": "iid, 5 clients",
              "seed": 0, "upload_values_per_client_round": 28992, "wall_time_s": 600.0}
    retrieval = {**labels, "method": "pe-rsitr", "test_set": "UCM-Captions test: 210 images",
                 "global": {"mR": 19.75, "mR_argsort": 22.1, "i2t_r1": 1.0}, "personalised": {}}
    summary = run_summary(retrieval)
    assert summary["server mR"] == 19.75 and summary["server mR_argsort"] == 22.1
    assert "personalised_accuracy" not in summary and "personalised mR" not in summary
    rounds = pd.DataFrame({"round": [0, 1, 2], "val_mR": [None, 8.0, 9.5], "train_loss": [None, 3.0, 2.5],
                           "up_bytes_per_client": [0, 4, 4], "cum_up_bytes": [0, 4, 8]})
    figures = run_figures(rounds, pd.DataFrame(), retrieval, "pe-rsitr on UCM-Captions")
    assert set(figures) == {"learning_curves", "communication"}
    curves = figures["learning_curves"].axes[0]
    assert list(curves.lines[0].get_ydata()) == [8.0, 9.5] and "validation mR" in curves.get_ylabel()
    for fig in figures.values():
        plt.close(fig)
    classification = {**labels, "method": "fedrsclip", "personalised_accuracy": 0.6,
                      "personalised_accuracy_unweighted": 0.58, "global_accuracy": 0.41}
    assert run_summary(classification)["global_accuracy"] == 0.41
