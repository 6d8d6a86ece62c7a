"""Figures of the study: the notebooks and ``fedrs report`` call these, nothing else draws.

Every function returns a matplotlib ``Figure`` and takes a ``backbone`` label that goes into the
title, so no figure can be separated from the model that produced it. Axes carry units
(accuracy in %, communication in values or KiB per client per round).

The figures are drawn in the study's :data:`STYLE`, applied while each function draws
(:func:`style`): importing this module leaves the global ``matplotlib.rcParams`` alone.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from fedrs.study.vocabulary import dataset_label, method_label

#: the study's figure style (matplotlib rcParams), applied by :func:`style`
STYLE = {"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 9, "svg.hashsalt": "fedrs"}

_Draw = TypeVar("_Draw", bound=Callable[..., Any])


@contextmanager
def style() -> Iterator[None]:
    """The study's :data:`STYLE` for the figures made (and saved) inside; the global rcParams
    are restored on leaving."""
    with plt.rc_context(STYLE):
        yield


class StyledFigure(Figure):
    """A figure that renders in the study's :data:`STYLE` wherever it is drawn (a notebook's
    display, ``savefig``): matplotlib reads some rcParams only when drawing (tick density follows
    the tick label size, lazily made ticks take the grid alpha), after the function that made the
    figure has returned."""

    def draw(self, renderer):
        with style():
            return super().draw(renderer)

    def get_tightbbox(self, *args, **kwargs):
        with style():
            return super().get_tightbbox(*args, **kwargs)


def _subplots(*args, **kwargs):
    """``plt.subplots`` making a :class:`StyledFigure`."""
    return plt.subplots(*args, FigureClass=StyledFigure, **kwargs)


def styled(draw: _Draw) -> _Draw:
    """Decorator: ``draw`` builds its figure inside :func:`style` (fonts, grid, spines are read
    when artists are made)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with style():
            return draw(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _title(what: str, backbone: str | None, protocol: str = "") -> str:
    """A figure title naming the backbone and, for study figures, the protocol (clients, rounds,
    seeds), so no figure can be separated from what produced it."""
    where = " · ".join(p for p in (f"backbone: {backbone}" if backbone else "", protocol) if p)
    return f"{what}\n{where}" if where else what


# --- 00_data ------------------------------------------------------------------------------------

@styled
def sample_grid(dataset, per_class: int = 1, max_classes: int | None = None, thumb: int = 64,
                columns: int = 7) -> plt.Figure:
    """The first ``per_class`` images of each class (up to ``max_classes`` classes), labelled."""
    from fedrs.backbone.features import load_rgb

    labels = np.asarray(dataset.labels)
    classes = list(range(dataset.num_classes))[: max_classes or None]
    picks = [(c, int(i)) for c in classes for i in np.flatnonzero(labels == c)[:per_class]]
    cols = min(columns * per_class, len(picks)) or 1
    rows = math.ceil(len(picks) / cols)
    fig, axes = _subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (c, i) in zip(axes.flat, picks):
        img = load_rgb(dataset.paths[i]).resize((thumb, thumb))
        ax.imshow(img)
        ax.set_title(dataset.prompt_names[c], fontsize=7)
    fig.suptitle(f"{dataset.name}: {len(dataset)} images, {dataset.num_classes} classes")
    fig.tight_layout()
    return fig


@styled
def class_counts(dataset) -> plt.Figure:
    """Images per class of one dataset (bar chart)."""
    counts = dataset.class_counts()
    fig, ax = _subplots(figsize=(max(4, 0.28 * len(counts)), 2.6))
    ax.bar(range(len(counts)), counts, color="tab:blue")
    ax.set_xticks(range(len(counts)), dataset.prompt_names, rotation=75, fontsize=7)
    ax.set_ylabel("images")
    ax.set_title(f"{dataset.name}: images per class")
    fig.tight_layout()
    return fig


@styled
def client_class_heatmap(partition, title: str | None = None) -> plt.Figure:
    """Training images per (client, class) of a Fed-RSIC partition."""
    import seaborn as sns

    hist = np.array([c.class_histogram for c in partition.clients])
    fig, ax = _subplots(figsize=(max(5, 0.3 * hist.shape[1] + 2), 0.35 * hist.shape[0] + 1.8))
    sns.heatmap(hist, ax=ax, cmap="viridis", cbar_kws={"label": "training images"},
                xticklabels=partition.classnames, yticklabels=[f"client {c.client_id}" for c in partition.clients])
    ax.grid(False)
    ax.tick_params(axis="x", labelsize=7, rotation=75)
    ax.set_xlabel("class")
    ax.set_ylabel("")
    ax.set_title(title or f"{partition.dataset}: training images per client and class")
    fig.tight_layout()
    return fig


@styled
def samples_per_client(partition, title: str | None = None) -> plt.Figure:
    """Training and test images per client, stacked."""
    ids = [c.client_id for c in partition.clients]
    train = [len(c.train_indices) for c in partition.clients]
    test = [len(c.test_indices) for c in partition.clients]
    fig, ax = _subplots(figsize=(max(4, 0.45 * len(ids) + 1), 2.6))
    ax.bar(ids, train, label="train", color="tab:blue")
    ax.bar(ids, test, bottom=train, label="test (personalised)", color="tab:orange")
    ax.set_xticks(ids)
    ax.set_xlabel("client")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{partition.dataset}: images per client")
    fig.tight_layout()
    return fig


# --- 01_zero_shot -------------------------------------------------------------------------------

@styled
def zero_shot_accuracy(rows: Sequence[Mapping[str, Any]], backbone: str) -> plt.Figure:
    """Top-1 per dataset (``evaluate_zero_shot`` rows), with chance level."""
    df = pd.DataFrame(rows)
    fig, ax = _subplots(figsize=(1.4 * len(df) + 2, 3))
    x = np.arange(len(df))
    cols = [c for c in ("top1", "top1_ensemble") if c in df]
    width = 0.8 / len(cols)
    for k, col in enumerate(cols):
        bars = ax.bar(x + (k - (len(cols) - 1) / 2) * width, df[col], width,
                      label="single template" if col == "top1" else "template ensemble")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    if "chance" in df:
        ax.scatter(x, df["chance"], marker="_", s=400, color="k", label="chance", zorder=3)
    ax.set_xticks(x, df["dataset"])
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title(_title("Zero-shot accuracy per dataset", backbone))
    fig.tight_layout()
    return fig


@styled
def per_class_accuracy(per_class: Mapping[str, float], dataset: str, backbone: str) -> plt.Figure:
    """Per-class top-1 (``ZeroShotResult.per_class_accuracy()``), sorted."""
    items = sorted(per_class.items(), key=lambda kv: (-np.nan_to_num(kv[1], nan=-1), kv[0]))
    fig, ax = _subplots(figsize=(max(4, 0.3 * len(items) + 1), 3))
    ax.bar(range(len(items)), [v for _, v in items], color="tab:green")
    ax.set_xticks(range(len(items)), [k for k, _ in items], rotation=75, fontsize=7)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(_title(f"{dataset}: zero-shot accuracy per class", backbone))
    fig.tight_layout()
    return fig


@styled
def confusion(labels: Sequence[int], predictions: Sequence[int], classnames: Sequence[str],
              dataset: str, backbone: str, normalize: bool = True) -> plt.Figure:
    """Row-normalised confusion matrix (sklearn), true class on the rows."""
    import seaborn as sns
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(labels, predictions, labels=list(range(len(classnames))),
                          normalize="true" if normalize else None)
    n = len(classnames)
    fig, ax = _subplots(figsize=(0.32 * n + 2.5, 0.3 * n + 2))
    sns.heatmap(100 * cm if normalize else cm, ax=ax, cmap="Blues", vmin=0,
                cbar_kws={"label": "% of the true class" if normalize else "images"},
                xticklabels=classnames, yticklabels=classnames, square=True)
    ax.grid(False)
    ax.tick_params(labelsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(_title(f"{dataset}: zero-shot confusion matrix", backbone))
    fig.tight_layout()
    return fig


# --- 02_federated_run ---------------------------------------------------------------------------

#: rounds.csv columns (fedrs.federated.engine): accuracies are fractions, losses ``train_*``
ACCURACY_CURVES = {"personalised_acc_weighted": "personalised (weighted by test images)",
                   "personalised_acc_unweighted": "personalised (mean over clients)",
                   "global_acc": "global (shared prompts, pooled test set)"}


def _loss_terms(ax, rounds: pd.DataFrame) -> None:
    """The ``train_*`` loss terms of ``rounds.csv`` against the round, on ``ax``."""
    losses = [c for c in rounds.columns if str(c).startswith("train_")]
    for col in losses:
        rows = rounds[rounds["round"] > 0][["round", col]].dropna()
        ax.plot(rows["round"], rows[col], marker="o", ms=3, label=col.removeprefix("train_"))
    ax.set_xlabel("round")
    ax.set_ylabel("training loss (mean over sampled clients)")
    if losses:
        ax.legend(fontsize=7)
    ax.set_title("loss terms")


@styled
def learning_curves(rounds: pd.DataFrame, backbone: str, title: str = "", method: str | None = None) -> plt.Figure:
    """Accuracy (personalised and global, %) and training loss terms against the round.

    ``method``: the run's method name; a method without a global model (local-only) gets no global
    curve, since its server prompt never trains."""
    from fedrs.methods import has_global_model

    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for col, label in ACCURACY_CURVES.items():
        if col == "global_acc" and method is not None and not has_global_model(method):
            continue
        if col in rounds:
            rows = rounds[["round", col]].dropna()
            a.plot(rows["round"], 100 * rows[col], marker="o", ms=3, label=label)
    a.set_xlabel("round (0 = before training)")
    a.set_ylabel("top-1 accuracy (%)")
    a.legend(fontsize=7)
    a.set_title("accuracy")
    _loss_terms(b, rounds)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(_title(title or "Learning curves", backbone))
    return fig


@styled
def retrieval_curves(rounds: pd.DataFrame, backbone: str, title: str = "") -> plt.Figure:
    """A retrieval run's validation mR (%, server model and, with private parts, the clients' mean)
    and training loss terms against the round (``rounds.csv`` of a ``pe-rsitr`` run)."""
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for col, label in (("val_mR", "server model"), ("val_mR_personalised", "personalised (client mean)")):
        if col in rounds:
            rows = rounds[["round", col]].dropna()
            a.plot(rows["round"], rows[col], marker="o", ms=3, label=label)
    a.set_xlabel("round")
    a.set_ylabel("validation mR (%)")
    if a.lines:
        a.legend(fontsize=7)
    a.set_title("validation split (selection only; test is scored at the end)")
    _loss_terms(b, rounds)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(_title(title or "Learning curves", backbone))
    return fig


def is_retrieval_run(metrics: dict) -> bool:
    """``metrics`` (a run's metrics.json) is a retrieval run's: recalls and mR, not accuracies."""
    return metrics.get("method") == "pe-rsitr"


def run_summary(metrics: dict) -> dict:
    """What the run notebook shows of a finished run's metrics.json: its labels and headline numbers
    (personalised and global accuracy; for a retrieval run the server's and the clients' mR on test
    at the final round, pessimistic ties and the papers' order)."""
    out = {k: metrics[k] for k in ("backbone", "method", "dataset", "split", "seed")}
    if is_retrieval_run(metrics):
        out["test_set"] = metrics.get("test_set", "")
        for who, section in (("server", "global"), ("personalised", "personalised")):
            scores = metrics.get(section) or {}
            for key in ("mR", "mR_argsort"):
                if key in scores:
                    out[f"{who} {key}"] = scores[key]
    else:
        out.update({k: metrics[k] for k in ("personalised_accuracy", "personalised_accuracy_unweighted",
                                            "global_accuracy")})
    out.update({k: metrics[k] for k in ("upload_values_per_client_round", "wall_time_s")})
    return out


def run_figures(rounds: pd.DataFrame, clients: pd.DataFrame, metrics: dict, title: str) -> dict[str, plt.Figure]:
    """The run notebook's figures of one run folder (``rounds.csv``, ``clients.csv``, metrics.json),
    by name: learning curves, communication, and each client's accuracy (classification runs)."""
    backbone = metrics["backbone"]
    if is_retrieval_run(metrics):
        return {"learning_curves": retrieval_curves(rounds, backbone, f"Learning curves: {title}"),
                "communication": communication_per_round(rounds, backbone, f"Communication: {title}")}
    return {"learning_curves": learning_curves(rounds, backbone, f"Learning curves: {title}", method=metrics["method"]),
            "communication": communication_per_round(rounds, backbone, f"Communication: {title}"),
            "per_client_accuracy": per_client_accuracy(clients, backbone, f"Accuracy per client: {title}")}


@styled
def communication_per_round(rounds: pd.DataFrame, backbone: str, title: str = "") -> plt.Figure:
    """KiB uploaded / downloaded per client in each round, and cumulative over all clients."""
    rows = rounds[rounds["round"] > 0]
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for col, label, style in (("up_bytes_per_client", "upload", "-o"), ("down_bytes_per_client", "download", "--s")):
        if col in rows:
            a.plot(rows["round"], rows[col] / 1024, style, ms=3, label=label)
    for col, label, style in (("cum_up_bytes", "upload", "-o"), ("cum_down_bytes", "download", "--s")):
        if col in rounds:
            b.plot(rounds["round"], rounds[col] / 1024, style, ms=3, label=label)
    a.set_ylabel("KiB per client per round")
    a.set_title("per client and round")
    b.set_ylabel("cumulative KiB (all clients)")
    b.set_title("cumulative")
    for ax in (a, b):
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(_title(title or "Communication", backbone))
    return fig


@styled
def per_client_accuracy(clients: pd.DataFrame, backbone: str, title: str = "") -> plt.Figure:
    """Each client's personalised accuracy on its own test split at the last evaluated round
    (``clients.csv``), with its number of test images."""
    evaluated = clients.dropna(subset=["personalised_acc"])
    last = evaluated[evaluated["round"] == evaluated["round"].max()].sort_values("client")
    fig, ax = _subplots(figsize=(max(5, 0.5 * len(last) + 1.5), 3), layout="constrained")
    bars = ax.bar(last["client"].astype(str), 100 * last["personalised_acc"], color="tab:purple")
    if "test_examples" in last:
        ax.bar_label(bars, labels=[f"n={int(n)}" for n in last["test_examples"]], fontsize=6)
    if len(last):
        mean = 100 * float(last["personalised_acc"].mean())
        ax.axhline(mean, color="k", ls="--", lw=1, label=f"mean over clients {mean:.1f}%")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("client (n = test images)")
    ax.set_ylabel("personalised accuracy (%)")
    ax.set_ylim(0, 105)
    round_ = int(last["round"].iloc[0]) if len(last) else 0
    ax.set_title(_title(title or f"Accuracy per client after round {round_}", backbone))
    return fig


# --- 03_ablations / fedrs report ------------------------------------------------------------------

def _setting(row) -> str:
    """The x-axis name of a setting: dataset and split (+ partial participation)."""
    label = f"{dataset_label(str(row['dataset']))}\n{row['split']}"
    fraction = row.get("participation") if hasattr(row, "get") else None
    if fraction is not None and not pd.isna(fraction) and float(fraction) < 1:
        label += f"\n{row['clients']} clients, {100 * float(fraction):g}%/round"
    return label


def _with_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``_setting`` column (:func:`_setting` of each row)."""
    return frame.assign(_setting=[_setting(r) for _, r in frame.iterrows()])


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    """One fixed colour per label (same label, same colour in every panel)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels))}


@styled
def grouped_bars(summary: pd.DataFrame, label: str, value: str, backbone: str, title: str,
                 protocol: str = "") -> plt.Figure:
    """Mean ± std bars: settings on the x axis, one bar per value of the ``label`` column."""
    part = summary[summary["backbone"] == backbone]
    settings = list(dict.fromkeys(_setting(r) for _, r in part.iterrows()))
    groups = list(dict.fromkeys(part[label]))
    fig, ax = _subplots(figsize=(max(6.0, 1.5 + len(settings) * (0.3 * len(groups) + 0.6)), 3.8),
                        layout="constrained")
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(settings))
    for k, g in enumerate(groups):
        rows = part[part[label] == g]
        pos = {_setting(r): (r[f"{value}_mean"], r[f"{value}_std"]) for _, r in rows.iterrows()}
        means = [pos.get(s, (np.nan, np.nan))[0] for s in settings]
        stds = [np.nan_to_num(pos.get(s, (np.nan, np.nan))[1]) for s in settings]
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=str(g))
    ax.set_xticks(x, settings)
    ax.set_ylabel(f"{value.replace('_acc', '').replace('_', ' ')} accuracy (%)")
    ax.set_ylim(0, 100)
    fig.legend(loc="outside lower center", ncols=min(len(groups), 4) or 1, fontsize=7)
    fig.suptitle(_title(title, backbone, protocol))
    return fig


@styled
def paired_differences(summary: pd.DataFrame, label: str, value: str, backbone: str, title: str,
                       protocol: str = "", reference: str = "FedRSCLIP") -> plt.Figure | None:
    """Each row's paired difference to the reference (``<value>_diff``) with its 95% interval
    (``_diff_low`` .. ``_diff_high``), one panel per setting. Filled markers: the interval excludes
    0 (distinguishable); open markers: it does not; a row with one paired seed has no interval."""
    part = summary[(summary["backbone"] == backbone) & summary[f"{value}_diff"].notna()]
    if part.empty:
        return None
    part = _with_settings(part)
    settings = list(dict.fromkeys(part["_setting"]))
    labels = list(dict.fromkeys(part[label]))
    fig, axes = _subplots(1, len(settings), figsize=(3.2 * len(settings) + 2.2, 0.32 * len(labels) + 1.6),
                          squeeze=False, sharey=True, layout="constrained")
    y = {name: i for i, name in enumerate(reversed(labels))}
    for ax, setting in zip(axes[0], settings):
        rows = part[part["_setting"] == setting]
        for _, r in rows.iterrows():
            d, lo, hi = float(r[f"{value}_diff"]), float(r[f"{value}_diff_low"]), float(r[f"{value}_diff_high"])
            err = [[d - lo], [hi - d]] if np.isfinite(lo) else None
            filled = bool(r[f"{value}_distinguishable"])
            ax.errorbar(d, y[r[label]], xerr=err, fmt="o", capsize=2, color="tab:blue",
                        markerfacecolor="tab:blue" if filled else "white")
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_title(setting.replace("\n", " · "), fontsize=8)
        ax.set_xlabel(f"Δ {value.replace('_acc', '').replace('_', ' ')} accuracy vs {reference} (points)")
    axes[0][0].set_yticks(list(y.values()), list(y.keys()))
    fig.suptitle(_title(f"{title}: paired difference to {reference}, 95% t-interval over seeds "
                        "(filled: excludes 0)", backbone, protocol))
    return fig


@styled
def prompt_length_curve(summary: pd.DataFrame, backbone: str, protocol: str = "") -> plt.Figure:
    """Accuracy and uploaded values against prompt length (FedRSCLIP, full)."""
    part = summary[summary["backbone"] == backbone]
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    settings = [" · ".join(map(str, k)) for k in dict.fromkeys(zip(part["dataset"], part["split"]))]
    colors = _colors(settings)
    for (dataset, split), rows in part.groupby(["dataset", "split"], sort=False):
        name = f"{dataset} · {split}"
        lengths = rows["prompt_length"].astype(float)
        a.errorbar(lengths, rows["personalised_acc_mean"],
                   yerr=np.nan_to_num(rows["personalised_acc_std"].astype(float)),
                   marker="o", capsize=2, color=colors[name], label=f"{name}, personalised")
        a.errorbar(lengths, rows["global_acc_mean"], yerr=np.nan_to_num(rows["global_acc_std"].astype(float)),
                   marker="s", ls="--", capsize=2, color=colors[name], label=f"{name}, global")
        b.plot(lengths, rows["upload_values"].astype(float), marker="o", color=colors[name], label=name)
    ticks = sorted(set(part["prompt_length"].dropna().astype(int)))
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("prompt length (context tokens)")
        ax.legend(fontsize=7)
    a.set_ylabel("top-1 accuracy (%)")
    b.set_ylabel("uploaded values / client / round")
    a.set_title("accuracy (solid: personalised, dashed: global)")
    b.set_title("communication")
    fig.suptitle(_title("FedRSCLIP: prompt length", backbone, protocol))
    return fig


@styled
def accuracy_vs_communication(summary: pd.DataFrame, backbone: str, protocol: str = "") -> plt.Figure:
    """Personalised accuracy against uploaded values per client per round (symlog x: 0 = local)."""
    part = _with_settings(summary[summary["backbone"] == backbone])
    settings = list(dict.fromkeys(part["_setting"]))
    colors = _colors(list(part["label"]))
    fig, axes = _subplots(1, len(settings), figsize=(4.0 * len(settings) + 2, 3.4), squeeze=False,
                          layout="constrained")
    for ax, setting in zip(axes[0], settings):
        rows = part[part["_setting"] == setting]
        for _, r in rows.iterrows():
            xval = np.nan if pd.isna(r["upload_values"]) else float(r["upload_values"])
            ax.errorbar(xval, r["personalised_acc_mean"], yerr=np.nan_to_num(r["personalised_acc_std"]),
                        marker="o", capsize=2, color=colors[r["label"]], label=r["label"])
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlabel("uploaded values / client / round")
        ax.set_ylabel("personalised accuracy (%)")
        ax.set_title(setting.replace("\n", " · "), fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=label) for label, c in colors.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    fig.suptitle(_title("Accuracy against communication (0 = nothing uploaded)", backbone, protocol))
    return fig


@styled
def mean_learning_curves(rounds: pd.DataFrame, backbone: str, value: str, protocol: str = "") -> plt.Figure | None:
    """Mean over seeds of ``value`` per round, one line per row (its ``label``, else its method's),
    one panel per setting."""
    part = rounds[rounds["backbone"] == backbone] if "backbone" in rounds else rounds
    if part.empty or value not in part or "round" not in part:
        return None
    part = _with_settings(part)
    settings = list(dict.fromkeys(part["_setting"]))
    fig, axes = _subplots(1, len(settings), figsize=(4.0 * len(settings) + 2, 3.4), squeeze=False,
                          layout="constrained")
    part = part.assign(_label=part["label"] if "label" in part else part["method"].map(method_label))
    colors = _colors(list(part["_label"]))
    for ax, setting in zip(axes[0], settings):
        rows = part[part["_setting"] == setting]
        for name, m in rows.groupby("_label", sort=False):
            curve = m.groupby("round")[value].agg(["mean", "std"]).reset_index()
            color = colors[name]
            ax.plot(curve["round"], 100 * curve["mean"], marker="o", ms=3, color=color)
            ax.fill_between(curve["round"], 100 * (curve["mean"] - curve["std"].fillna(0)),
                            100 * (curve["mean"] + curve["std"].fillna(0)), alpha=0.15, color=color)
        ax.set_xlabel("round (0 = before training)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{value.replace('_', ' ')} (%)")
        ax.set_title(setting.replace("\n", " · "), fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", label=label) for label, c in colors.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    fig.suptitle(_title("Learning curves (mean ± std over seeds)", backbone, protocol))
    return fig


@styled
def privacy_utility(summary: pd.DataFrame, backbone: str, protocol: str = "") -> plt.Figure | None:
    """Accuracy against the epsilon spent (log x; mean ± std over seeds as error bars), one panel
    per setting, personalised and global; the row without DP (``dp_mode`` none, epsilon inf) is a
    dashed line with its ± std band, DP rows without a recorded epsilon are left out.
    ``summary``: :func:`fedrs.study.privacy.privacy_table`'s frame."""
    part = summary[summary["backbone"] == backbone]
    if part.empty:
        return None
    part = _with_settings(part)
    panels = list(dict.fromkeys(zip(part["_setting"], part["base_row"])))
    fig, axes = _subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 3.4), squeeze=False,
                          layout="constrained")
    colors = {"personalised_acc": "tab:blue", "global_acc": "tab:orange"}
    for ax, (setting, base) in zip(axes[0], panels):
        rows = part[(part["_setting"] == setting) & (part["base_row"] == base)]
        clear = rows[rows["dp_mode"] == "none"]
        private = rows[(rows["dp_mode"] != "none") & np.isfinite(rows["epsilon"].astype(float))].sort_values("epsilon")
        for value, color in colors.items():
            ax.errorbar(private["epsilon"].astype(float), private[f"{value}_mean"],
                        yerr=np.nan_to_num(private[f"{value}_std"].astype(float)), marker="o", capsize=3, color=color)
            for _, r in clear.iterrows():
                mean, std = float(r[f"{value}_mean"]), float(np.nan_to_num(r[f"{value}_std"]))
                ax.axhline(mean, ls="--", lw=1, color=color)
                ax.axhspan(mean - std, mean + std, alpha=0.12, color=color, lw=0)
        ax.set_xscale("log")
        ticks = sorted(set(private["epsilon"].astype(float)))
        if ticks:  # label the epsilons of the runs, not powers of ten
            ax.set_xticks(ticks, [f"{e:.3g}" for e in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        deltas = ", ".join(sorted({str(d) for d in private["delta"] if str(d) not in ("", "nan")}))
        ax.set_xlabel(f"ε after the last round{f' at δ = {deltas}' if deltas else ''} (log scale)")
        ax.set_ylabel("accuracy (%)")
        name = clear["label"].iloc[0] if len(clear) else method_label(str(rows["method"].iloc[0]))
        ax.set_title(f"{name} · " + setting.replace("\n", " · "), fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", label=f"{v.removesuffix('_acc')} (DP)")
               for v, c in colors.items()]
    handles += [plt.Line2D([], [], color=c, ls="--", label=f"{v.removesuffix('_acc')}, no DP (ε = ∞)")
                for v, c in colors.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(_title("Privacy-utility: accuracy against ε (mean ± std over seeds)", backbone, protocol))
    return fig


# --- 04_retrieval -------------------------------------------------------------------------------

@styled
def retrieval_examples(query: str, paths: Sequence[str | Path], scores: Sequence[float], backbone: str,
                       labels: Sequence[str] | None = None, method: str = "", thumb: int = 96,
                       columns: int = 5) -> plt.Figure:
    """A text query's top images in rank order, each titled with its rank, cosine score and class."""
    from fedrs.backbone.features import load_rgb

    cols = min(columns, len(paths)) or 1
    rows = math.ceil(len(paths) / cols) or 1
    fig, axes = _subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, path, score) in enumerate(zip(axes.flat, paths, scores)):
        ax.imshow(load_rgb(path).resize((thumb, thumb)))
        name = f"\n{labels[i]}" if labels is not None else ""
        ax.set_title(f"#{i + 1}  cos {score:.3f}{name}", fontsize=7)
    by = f" ({method})" if method else ""
    fig.suptitle(_title(f"Top {len(paths)} images for {query!r}{by}", backbone), fontsize=9)
    fig.tight_layout()
    return fig
