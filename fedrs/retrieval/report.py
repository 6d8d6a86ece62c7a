"""The retrieval tables from their results on disk (``fedrs report`` on a retrieval folder).

Two kinds of retrieval results exist, and :func:`write_retrieval_report` writes the table of
whichever a folder holds:

* a **PETL folder** (``results/retrieval/petl/<dataset>/``: ``s<seed>/<row>.json``, written by
  ``fedrs retrieval petl``) -> ``petl_table.{md,csv}`` (:func:`fedrs.retrieval.petl.write_petl_table`);
* a folder of **federated-retrieval run folders** (``results/retrieval/federated/<run>/``, each a
  ``fedrs run`` of ``method: {name: pe-rsitr}`` with metrics.json and params.yaml, e.g. the grid
  ``fedrs sweep params/studies/retrieval`` runs) -> ``tables/federated.{md,csv}``
  (:func:`federated_summary`): per setting (clients, how they were dealt, what is averaged) the mean
  +- std over seeds of the server model's and the clients' personalised mR on test at the final
  round, and the paired difference of each to the centralised run of the same seed (one client,
  same engine, optimiser and passes over the data) with its 95% t-interval
  (:func:`fedrs.study.stats.paired_difference`, the study's one implementation).

Nothing is recomputed from models: every number comes from the files, so a regenerated table
equals the committed one byte for byte. A folder mixing backbones, caption sets, test sets or
training budgets is refused (one table per protocol), and so is a run whose recalls are not finite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from fedrs.errors import FedrsError
from fedrs.io import read_json_object, read_yaml_mapping, write_text_atomic
from fedrs.retrieval.compare import markdown_table
from fedrs.study.stats import CONFIDENCE, PairedDifference, paired_difference
from fedrs.study.tables import fmt_mean_std, fmt_seeds

#: the federated table's files, below ``<folder>/tables/``
FEDERATED_MD = "federated.md"
FEDERATED_CSV = "federated.csv"
#: the columns of one run (:func:`read_federated_runs`)
RUN_COLUMNS = ("run", "seed", "clients", "split", "federate", "private", "uploaded", "server_mR", "server_mR_argsort",
               "personalised_mR", "final_val_mR", "rounds", "local_epochs", "lr", "backbone", "dataset",
               "test_set", "train_images", "loss", "wall_time_s")


class RetrievalReportError(FedrsError):
    """Retrieval results that cannot make a table (the message says why and what to do)."""


def _read_json(path: Path) -> dict:
    return read_json_object(path, RetrievalReportError)


def is_petl_folder(folder: str | Path) -> bool:
    """``folder`` holds PETL row files (``s<seed>/<row>.json``)."""
    return any(Path(folder).glob("s[0-9]*/*.json"))


def retrieval_run_dirs(folder: str | Path) -> list[Path]:
    """The run folders below ``folder`` whose metrics.json is a retrieval run's (``method: pe-rsitr``)."""
    out = []
    for metrics in sorted(Path(folder).rglob("metrics.json")):
        try:
            method = json.loads(metrics.read_text(encoding="utf-8")).get("method")
        except (OSError, ValueError, AttributeError):
            continue  # a damaged file is reported by whichever reader owns it
        if method == "pe-rsitr":
            out.append(metrics.parent)
    return out


def _yaml(path: Path) -> dict:
    return read_yaml_mapping(path, RetrievalReportError)


def _split_tag(partition: dict, clients: int) -> str:
    if clients == 1:
        return "pooled"
    scheme = partition.get("scheme", "iid")
    if scheme == "dirichlet":
        return f"Dirichlet({partition.get('alpha')})"
    return scheme.upper() if scheme == "iid" else scheme


def read_federated_runs(folder: str | Path) -> pd.DataFrame:
    """One row per retrieval run folder below ``folder`` (:data:`RUN_COLUMNS`), sorted by run name."""
    rows = []
    for run in retrieval_run_dirs(folder):
        m = _read_json(run / "metrics.json")
        if not (run / "params.yaml").is_file():
            raise RetrievalReportError(f"{run}: metrics.json without params.yaml; re-run that run or delete its folder")
        params = _yaml(run / "params.yaml")
        train = params.get("train", {})
        server, personal = m.get("global") or {}, m.get("personalised") or {}
        for key, value in (("global mR", server.get("mR")), ("global mR_argsort", server.get("mR_argsort"))):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RetrievalReportError(f"{run}/metrics.json: {key} is {value!r}, not a finite number "
                                           f"(a diverged or unfinished run): re-run it or delete its folder")
        clients = int(m["num_clients"])
        selection = m.get("selection") or {}
        rows.append({
            "run": str(run.relative_to(folder)), "seed": int(m["seed"]), "clients": clients,
            "split": _split_tag(m.get("partition") or {}, clients), "federate": m.get("federate", "all"),
            "private": " ".join(m.get("private_prefixes") or []),
            "uploaded": int(m.get("upload_values_per_client_round", 0)),
            "server_mR": float(server["mR"]), "server_mR_argsort": float(server["mR_argsort"]),
            "personalised_mR": float(personal["mR"]) if personal.get("mR") is not None else math.nan,
            "final_val_mR": float(selection["final_val_mR"]) if selection.get("final_val_mR") is not None else math.nan,
            "rounds": int(m["rounds"]), "local_epochs": int(train.get("local_epochs", 1)), "lr": train.get("lr"),
            "backbone": m["backbone"], "dataset": m["dataset"], "test_set": m.get("test_set", ""),
            "train_images": int(m.get("train_images", 0)),
            "loss": ", ".join(f"{k} {v}" for k, v in (m.get("loss") or {}).items()),
            "wall_time_s": float(m.get("wall_time_s", math.nan)),
        })
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


#: order of the table's settings: pooled first, then by split, clients, what is averaged
_SPLIT_ORDER = {"pooled": 0, "IID": 1, "Dirichlet(0.5)": 2, "Dirichlet(0.1)": 3}
_FEDERATE_LABEL = {"all": "whole adapter", "cross-modal": "cross-modal part only"}


def _setting_key(row: pd.Series) -> tuple:
    return (_SPLIT_ORDER.get(row["split"], 9), row["split"], row["clients"], row["federate"] != "all",
            row["federate"], row["private"])


def federated_summary(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per setting (split, clients, what is averaged, private tensors): its seeds, mean and std
    of each mR over them, and the paired difference of the server and personalised mR to the
    centralised (one-client) run of each seed. Refuses a folder that mixes protocols or has no
    centralised run."""
    if runs.empty:
        raise RetrievalReportError("no retrieval run folders (metrics.json of method pe-rsitr) here: run the grid "
                                   "first, e.g. `fedrs sweep params/studies/retrieval`")
    # the learning rate may differ (each setting at its validated rate) and is a column of the table
    for key in ("backbone", "dataset", "test_set", "rounds", "local_epochs", "loss", "train_images"):
        seen = sorted({str(v) for v in runs[key]})
        if len(seen) > 1:
            raise RetrievalReportError(f"the runs mix {key}s {seen}: one table per protocol; move the odd runs "
                                       f"to a folder of their own")
    keys = runs.apply(_setting_key, axis=1)  # one setting per row: split, clients, what is averaged
    for _, group in runs.groupby([keys, "seed"]):
        if len(group) > 1:
            raise RetrievalReportError(f"runs {sorted(group['run'])} are the same setting and seed: keep one")
    central = runs[runs["clients"] == 1]
    if central.empty:
        raise RetrievalReportError("no centralised run (data.num_clients: 1) to pair the federated runs with: run "
                                   "params/studies/retrieval/federated/centralised__s<seed>.yaml for their seeds")
    reference = {int(r.seed): float(r.server_mR) for r in central.itertuples()}
    out = []
    for key in sorted(set(keys)):
        part = runs[keys == key].sort_values("seed")
        first = part.iloc[0]
        server = {int(s): float(v) for s, v in zip(part["seed"], part["server_mR"])}
        personal = {int(s): float(v) for s, v in zip(part["seed"], part["personalised_mR"]) if math.isfinite(v)}
        d_server = paired_difference(server, reference)
        d_personal = paired_difference(personal, reference) if personal else PairedDifference(
            math.nan, math.nan, math.nan, math.nan, 0)
        averaged = _FEDERATE_LABEL.get(first["federate"], first["federate"])
        row = {"setting": "centralised (1 client, pooled data)" if first["clients"] == 1 else
               f"{first['split']}, {first['clients']} clients, {averaged} averaged"
               + (f" (private: {first['private']})" if first["private"] else ""),
               "split": first["split"], "clients": int(first["clients"]), "federate": first["federate"],
               "private": first["private"], "uploaded": int(first["uploaded"]),
               "seeds": fmt_seeds(part["seed"]), "seed_list": " ".join(str(int(v)) for v in part["seed"]),
               "n_seeds": len(part)}
        for col in ("server_mR", "server_mR_argsort", "personalised_mR", "final_val_mR", "wall_time_s"):
            values = [float(v) for v in part[col] if math.isfinite(float(v))]
            row[f"{col}_mean"] = sum(values) / len(values) if values else math.nan
            row[f"{col}_std"] = (pd.Series(values).std(ddof=1) if len(values) > 1 else math.nan)
        for name, d in (("server", d_server), ("personalised", d_personal)):
            row.update({f"d_{name}": d.mean, f"d_{name}_low": d.low, f"d_{name}_high": d.high,
                        f"d_{name}_pairs": d.pairs, f"d_{name}_distinguishable": d.distinguishable})
        row.update({k: first[k] for k in ("backbone", "dataset", "test_set", "rounds", "local_epochs", "lr",
                                          "train_images", "loss")})
        out.append(row)
    return out


def _difference(row: dict, name: str, reference: bool) -> str:
    if reference:
        return "reference"
    pairs = row[f"d_{name}_pairs"]
    if pairs == 0:
        return "-"
    if pairs == 1:
        return f"{row[f'd_{name}']:+.2f} (1 seed: no interval)"
    verdict = "" if row[f"d_{name}_distinguishable"] else " n.d."
    return f"{row[f'd_{name}']:+.2f} [{row[f'd_{name}_low']:+.2f}, {row[f'd_{name}_high']:+.2f}]{verdict}"


def federated_markdown(summary: Sequence[dict]) -> str:
    """The table of :func:`federated_summary` with its heading and notes."""
    first = summary[0]
    level = f"{CONFIDENCE:.0%}"
    seeds = fmt_seeds(sorted({int(s) for r in summary for s in r["seed_list"].split()}))
    header = ["setting", "client lr", "uploaded values per client and round", "server mR",
              f"Δ vs centralised [{level} CI]", "personalised mR (client mean)", f"Δ vs centralised [{level} CI]",
              "server mR, papers' tie order", "val mR (final, server)", "seeds"]
    body = []
    for r in summary:
        central = r["clients"] == 1
        body.append([f"**{r['setting']}**" if central else r["setting"], f"{r['lr']:g}",
                     f"{r['uploaded']:,}" if not central else "-",
                     fmt_mean_std(r["server_mR_mean"], r["server_mR_std"]), _difference(r, "server", central),
                     fmt_mean_std(r["personalised_mR_mean"], r["personalised_mR_std"]),
                     _difference(r, "personalised", central),
                     fmt_mean_std(r["server_mR_argsort_mean"], r["server_mR_argsort_std"]),
                     fmt_mean_std(r["final_val_mR_mean"], math.nan), r["seeds"]])
    title = (f"# Federated retrieval on {first['dataset']}: MRS-Adapter + HMMC, backbone {first['backbone']}, "
             f"{first['rounds']} rounds x {first['local_epochs']} local epoch(s), seeds {seeds}")
    notes = f"""Test: {first['test_set']}. Recalls in percent; mR = mean of image->text and text->image
R@1/5/10 with pessimistic ties (a tied non-relevant item ranks first: a lower bound); "papers' tie
order" is the np.argsort order of the RSITR papers' evaluation scripts. Every cell is the mean over
the setting's seeds (± sample std); Δ is the paired difference to the centralised run of the same
seed, mean and {level} t-interval over the seeds (fedrs.study.stats.paired_difference); "n.d.": not
distinguishable (the interval holds 0).

Protocol: seed s chooses the validation split (20% of the training images, scored every round,
never trained on), the clients' shards and the training seed of every run alike. The other
{first['train_images']:,} training images are dealt to the clients as disjoint shards (IID: at random;
Dirichlet(alpha): by a Dirichlet draw over the images' scene classes) or all held by one client
(centralised: the same engine and passes over the data). Client SGD with momentum 0.9, cosine over
the rounds, at the "client lr" of each setting, chosen on the validation split
(fedrs.retrieval.config: FEDERATED_SGD_LR for several clients, CENTRALISED_SGD_LR for one).
Loss: {first['loss']}. The final round is reported, never the best.
"whole adapter averaged": every adapter tensor is averaged every round (FedAvg, weighted by client
images). "cross-modal part only": only the MRS-Adapter's cross-modal shared up-projection is
averaged; every other adapter tensor stays on its client, so the server model is scored with those
at their initial values and the personalised column (each client's own tensors, mean over clients)
is the one to read. Regenerate: `fedrs report <this folder>`."""
    return "\n".join([title, "", markdown_table(header, body), "", notes]) + "\n"


def write_federated_table(folder: str | Path) -> tuple[Path, Path]:
    """``<folder>/tables/federated.{csv,md}`` from the retrieval run folders below ``folder``."""
    folder = Path(folder)
    summary = federated_summary(read_federated_runs(folder))
    csv = write_text_atomic(folder / "tables" / FEDERATED_CSV,
                            pd.DataFrame(summary).to_csv(index=False, float_format="%.4f"))
    md = write_text_atomic(folder / "tables" / FEDERATED_MD, federated_markdown(summary))
    return csv, md


def write_retrieval_report(folder: str | Path) -> list[Path] | None:
    """The retrieval table of ``folder`` (PETL or federated, see the module docstring); None when
    ``folder`` holds no retrieval results (the caller reports it as a study folder)."""
    from fedrs.retrieval.petl import write_petl_table

    if is_petl_folder(folder):
        return list(write_petl_table(folder))
    if retrieval_run_dirs(folder):
        return list(write_federated_table(folder))
    return None


__all__ = ["FEDERATED_CSV", "FEDERATED_MD", "RUN_COLUMNS", "RetrievalReportError", "federated_markdown",
           "federated_summary", "is_petl_folder", "read_federated_runs", "retrieval_run_dirs",
           "write_federated_table", "write_retrieval_report"]
