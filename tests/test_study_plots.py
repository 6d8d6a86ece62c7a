"""Figures of the run notebook: which curves are drawn, labelled with the backbone."""

from __future__ import annotations

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
