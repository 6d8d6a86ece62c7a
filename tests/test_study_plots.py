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
