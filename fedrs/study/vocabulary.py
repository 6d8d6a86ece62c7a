"""The study's vocabulary: what it compares, under which names, in which order.

One home for the names that the params generator (``params/make_studies.py``), the tables
(:mod:`fedrs.study.tables`), the figures (:mod:`fedrs.study.plots`) and the benchmarks share.

**Rows.** Several rows of the study run the same registered method (PromptFL and PromptFL+VPT are
both ``promptfl``; FedRSCLIP, its ablation variants and "text+visual shared" are all
``fedrsclip``; the two pooled-data references are both ``centralised``), so a row's identity is
read from its whole method section by :func:`row_key`. The generator names every params file
``<row key>__<setting>__s<seed>.yaml`` from it, and the report (:mod:`fedrs.study.collect`) calls
it on each run folder's ``params.yaml``, so both read one function:

* the methods table's rows (:data:`METHOD_ROWS`): the baselines, the controls of the
  faithful-methods issue (FedRSCLIP-local, PromptFL+VPT, FedRSCLIP with text+visual shared, the
  matched-step pooled-data model) and FedRSCLIP;
* the alignment-constraint ablation (:data:`ABLATIONS`): FedRSCLIP with parts switched off;
* the sensitivity rows (prompt length, DPA kind, loss weights): FedRSCLIP with one of
  :data:`STUDY_DEFAULTS` changed, named by a suffix (``fedrsclip-m8``, ``fedrsclip-dpa-kl``,
  ``fedrsclip-lambda_dpa10``);
* rows trained with differential privacy: the run's ``privacy:`` section (mode not ``none``)
  adds a last tag, ``dp-<mode>-z<noise multiplier>`` (:func:`privacy_tag`: ``fedrsclip-dp-central-z4``),
  so a DP run never shares its row with the same row trained in the clear (its *clear row*,
  :func:`clear_row`), which the privacy table pairs it against.

The key names only what the study varies; the report refuses two runs of one setting and seed
whose key is equal but whose method sections differ. Plain data only: nothing here imports
pandas or torch.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

#: method registry name -> readable label, in table order (unknown methods follow, sorted). A
#: row's label is :func:`row_label` of its :func:`row_key`; this names the registry entries.
METHOD_LABELS: dict[str, str] = {
    "zeroshot": "Zero-shot CLIP",
    "local": "Local-only",
    "fedrsclip-local": "FedRSCLIP-local",
    "promptfl": "PromptFL",
    "fedpgp": "FedPGP",
    "fedotp": "FedOTP",
    "fedrsclip": "FedRSCLIP",
    "centralised": "Pooled-data reference",
}
#: the registered methods that have a params/offline/<method>_ucmerced.yaml of their own name, in
#: table order (benchmarks/bench_baselines.py runs them); the controls are rows (:data:`METHOD_ROWS`)
METHODS: tuple[str, ...] = ("zeroshot", "local", "promptfl", "fedpgp", "fedotp", "fedrsclip", "centralised")
#: the method whose variants make the constraint ablation and the sensitivity studies, and whose
#: default configuration is every paired difference's reference
MAIN_METHOD = "fedrsclip"
#: registry names that share FedRSCLIP's method keys (ablation switches, prompt length, DPA)
FEDRSCLIP_FAMILY: tuple[str, ...] = ("fedrsclip", "fedrsclip-local", "centralised")


def method_label(name: str) -> str:
    """The readable label of a method registry name (the name itself when the study has none)."""
    return METHOD_LABELS.get(name, name)


class StudyRow(NamedTuple):
    """One row of the methods table: its key (:func:`row_key`), label and where its method
    section comes from."""

    key: str      #: :func:`row_key` of its method section; its params files' name prefix
    label: str    #: its name in tables and figures
    source: str   #: its method section is ``params/offline/<source>_ucmerced.yaml``'s


#: the methods table, in table order: baselines, controls, FedRSCLIP, pooled-data references.
#: FedRSCLIP is the reference of every paired difference.
METHOD_ROWS: tuple[StudyRow, ...] = (
    StudyRow("zeroshot", "Zero-shot CLIP", "zeroshot"),
    StudyRow("local", "Local-only", "local"),
    StudyRow("fedrsclip-local", "FedRSCLIP-local", "fedrsclip_local"),
    StudyRow("promptfl", "PromptFL", "promptfl"),
    StudyRow("promptfl-vpt", "PromptFL+VPT", "promptfl_vpt"),
    StudyRow("fedpgp", "FedPGP", "fedpgp"),
    StudyRow("fedotp", "FedOTP", "fedotp"),
    StudyRow("fedrsclip-visual-shared", "FedRSCLIP (text+visual shared)", "fedrsclip_visual_shared"),
    StudyRow("fedrsclip", "FedRSCLIP", "fedrsclip"),
    StudyRow("centralised-matched", "Pooled data, matched steps", "centralised_matched"),
    StudyRow("centralised", "Pooled-data reference", "centralised"),
)
#: the row every paired difference is taken to (FedRSCLIP at its defaults)
REFERENCE_ROW = MAIN_METHOD
#: rows the study knows but does not generate (read back from run folders)
EXTRA_ROW_LABELS: dict[str, str] = {
    # FedOTP's global+local logit ensemble without transport (`matching: ensemble`; the older
    # `matching: average` reads as it)
    "fedotp-ensemble": "FedOTP (global+local ensemble)",
}


class AblationVariant(NamedTuple):
    """One variant of the alignment-constraint ablation of :data:`MAIN_METHOD`."""

    label: str                  #: its name in the ablation table and figure
    tag: str                    #: its row key is ``fedrsclip-<tag>`` (``fedrsclip`` for the full model)
    switches: dict[str, Any]    #: method-config keys the variant sets (empty: the full model)
    source: str = "fedrsclip"   #: ``params/offline/<source>_ucmerced.yaml``: its method section
    in_study: bool = True       #: generated (False: a variant the report still reads back)

    @property
    def key(self) -> str:
        return f"{MAIN_METHOD}-{self.tag}" if self.tag else MAIN_METHOD


#: the alignment-constraint ablation (study issue), in table order. "V_s uploaded" is the methods
#: table's "FedRSCLIP (text+visual shared)" control, and the full model is FedRSCLIP itself: both
#: run once, in the methods part.
ABLATIONS: tuple[AblationVariant, ...] = (
    AblationVariant("full", "", {}),
    AblationVariant("w/o DPA", "no-dpa", {"lambda_dpa": 0.0}),
    AblationVariant("w/o CMA", "no-cma", {"lambda_cma": 0.0}),
    AblationVariant("w/o DPA & CMA", "no-dpa-cma", {"lambda_dpa": 0.0, "lambda_cma": 0.0}),
    AblationVariant("shared text prompt only", "shared-only", {"private_prompts": False, "visual_prompts": False},
                    source="fedrsclip_shared_only"),
    AblationVariant("w/o visual prompts", "no-visual", {"visual_prompts": False}),
    AblationVariant("V_s uploaded", "visual-shared", {"upload": ["text_shared", "visual_shared"]},
                    source="fedrsclip_visual_shared"),
    # private_prompts: false alone keeps the shared visual prompt V_s, trained on each client and
    # never uploaded: a local visual prompt, not a shared-only model (the faithful-methods issue)
    AblationVariant("w/o private prompts (local visual prompt kept)", "no-private", {"private_prompts": False},
                    in_study=False),
)
#: the ablation's variant labels, in table order
ABLATION_VARIANTS: tuple[str, ...] = tuple(v.label for v in ABLATIONS)
#: variant label -> the method-config switches that make it
ABLATION_SWITCHES: dict[str, dict[str, Any]] = {v.label: v.switches for v in ABLATIONS}
#: row key -> ablation variant label
ABLATION_LABELS: dict[str, str] = {v.key: v.label for v in ABLATIONS}
#: every method-config key an ablation variant sets
SWITCH_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for v in ABLATIONS for k in v.switches))


#: the specification's default prompt length (context tokens per text prompt)
DEFAULT_PROMPT_LENGTH = 4
#: the prompt lengths of the prompt-length study (the default one is the methods study's run)
PROMPT_LENGTHS: tuple[int, ...] = (4, 8, 16)
#: DPA kinds of the sensitivity study (the first is the default)
DPA_KINDS: tuple[str, ...] = ("cosine", "kl", "contrastive")
#: loss weights of the sensitivity study, for each of lambda_dpa and lambda_cma (1 is the default)
LAMBDAS: tuple[float, ...] = (0.1, 1.0, 10.0)
#: FedRSCLIP's values of what the sensitivity study varies; a FedRSCLIP-family row differing in
#: one of them gets a suffix (:func:`row_key`). The generator checks them against
#: params/offline/fedrsclip_ucmerced.yaml.
STUDY_DEFAULTS: dict[str, Any] = {"n_ctx": DEFAULT_PROMPT_LENGTH, "dpa": "cosine",
                                  "lambda_dpa": 1.0, "lambda_cma": 1.0}
#: how a DP row's privacy tag starts (:func:`privacy_tag`)
DP_TAG_PREFIX = "dp-"
#: sensitivity row key suffix -> readable part of its label
_SENSITIVITY_LABELS = {"m": "M = {}", "dpa-": "DPA: {}", "lambda_dpa": "λ_DPA = {}", "lambda_cma": "λ_CMA = {}"}


# --- row identity ---------------------------------------------------------------------------------

def _off(value: Any) -> bool:
    """A loss weight that switches its term off (0); missing / None leaves it on."""
    try:
        return value is not None and float(value) == 0.0
    except (TypeError, ValueError):
        return False


def _num(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def ablation_tags(section: Mapping[str, Any]) -> list[str]:
    """The ablation parts a FedRSCLIP-family method section switches, as row-key tags in a fixed
    order: ``no-dpa``/``no-cma``/``no-dpa-cma``, then ``shared-only`` (no private and no visual
    prompts) or ``no-private``/``no-visual``, then ``visual-shared`` (``visual_shared`` uploaded).
    Missing keys (older run folders, other methods) leave a part on."""
    tags = []
    dpa, cma = _off(section.get("lambda_dpa")), _off(section.get("lambda_cma"))
    if dpa or cma:
        tags.append("no-dpa-cma" if dpa and cma else "no-dpa" if dpa else "no-cma")
    private_off = section.get("private_prompts") is False
    visual_off = section.get("visual_prompts") is False
    if private_off and visual_off:
        tags.append("shared-only")
    elif private_off:
        tags.append("no-private")
    elif visual_off:
        tags.append("no-visual")
    if "visual_shared" in (section.get("upload") or ()):
        tags.append("visual-shared")
    return tags


def sensitivity_tags(section: Mapping[str, Any]) -> list[str]:
    """Where a FedRSCLIP-family section leaves :data:`STUDY_DEFAULTS` (a weight of 0 is an
    ablation, not a sensitivity value): ``m<n>``, ``dpa-<kind>``, ``lambda_dpa<w>``, ``lambda_cma<w>``."""
    tags = []
    n_ctx = section.get("n_ctx")
    if n_ctx is not None and int(n_ctx) != STUDY_DEFAULTS["n_ctx"]:
        tags.append(f"m{int(n_ctx)}")
    dpa = section.get("dpa")
    if dpa is not None and dpa != STUDY_DEFAULTS["dpa"]:
        tags.append(f"dpa-{dpa}")
    for key in ("lambda_dpa", "lambda_cma"):
        value = section.get(key)
        if value is not None and not _off(value) and float(value) != STUDY_DEFAULTS[key]:
            tags.append(f"{key}{_num(value)}")
    return tags


class RowIdentity(NamedTuple):
    """What a method section (and a run's privacy section) is in the study (:func:`row_identity`)."""

    key: str                      #: the row key (:func:`row_key`)
    base: str                     #: the row before ablation/sensitivity parts (``fedrsclip``, ``promptfl-vpt``)
    ablation: tuple[str, ...]     #: :func:`ablation_tags` (FedRSCLIP family only)
    sensitivity: tuple[str, ...]  #: :func:`sensitivity_tags` (FedRSCLIP family only)
    privacy: str = ""             #: :func:`privacy_tag` (``dp-central-z4``; empty without DP)

    @property
    def clear_key(self) -> str:
        """The row key of the same row trained without DP (:func:`clear_row`; the key itself without DP)."""
        return clear_row(self.key, self.privacy)

    @property
    def label(self) -> str:
        """The methods-table label: :data:`METHOD_ROWS`'s, else the base row's label with the
        ablation and sensitivity parts (``FedRSCLIP (w/o DPA)``, ``FedRSCLIP (M = 8)``); a DP row
        adds its privacy part (``FedRSCLIP (DP central, z = 4)``, ``FedRSCLIP (w/o DPA, DP central, z = 4)``)."""
        clear = self.clear_key
        known = _ROW_LABELS.get(clear)
        parts = [] if known else self._parts()
        label = known or _ROW_LABELS.get(self.base) or method_label(self.base)
        if self.privacy:
            parts.append(privacy_label(self.privacy))
        if not parts:
            return label
        if label.endswith(")"):  # a label with parts of its own: one pair of parentheses
            return f"{label[:-1]}, {', '.join(parts)})"
        return f"{label} ({', '.join(parts)})"

    @property
    def variant(self) -> str | None:
        """The ablation table's label (``full``, ``w/o DPA``, ...) of a FedRSCLIP row at the study
        defaults trained without DP; None for every other row."""
        if self.base != MAIN_METHOD or self.sensitivity or self.privacy:
            return None
        return ABLATION_LABELS.get(self.key) or ", ".join(self._parts())

    def _parts(self) -> list[str]:
        return [ABLATION_LABELS.get(f"{MAIN_METHOD}-{t}", t) for t in self.ablation] + \
               [sensitivity_label(t) for t in self.sensitivity]


def privacy_tag(privacy: Mapping[str, Any] | None) -> str:
    """The row-key tag of a run's ``privacy:`` section: ``dp-<mode>-z<noise multiplier>``
    (``dp-central-z4``, ``dp-local-z0.5``); empty without DP (no section, or mode ``none``). The
    clipping norm and delta are not in it: the study varies the noise multiplier only, and the
    report refuses two runs of one row, setting and seed whose configurations differ."""
    mode = str((privacy or {}).get("mode") or "none")
    if mode == "none":
        return ""
    return f"{DP_TAG_PREFIX}{mode}-z{_num((privacy or {}).get('noise_multiplier', '?'))}"


def privacy_label(tag: str) -> str:
    """``dp-central-z4`` -> ``DP central, z = 4`` (the tag itself when it is not one)."""
    mode, sep, z = tag.removeprefix(DP_TAG_PREFIX).rpartition("-z")
    return f"DP {mode}, z = {z}" if tag.startswith(DP_TAG_PREFIX) and sep and mode else tag


def clear_row(key: str, tag: str) -> str:
    """The row key without its privacy ``tag`` (:func:`privacy_tag`): the row a DP run is the DP
    version of (``fedrsclip-dp-central-z4`` -> ``fedrsclip``); ``key`` itself when ``tag`` is empty."""
    return key.removesuffix(f"-{tag}") if tag else key


def clear_label(label: str, tag: str) -> str:
    """A DP row's label without its privacy part (:attr:`RowIdentity.label`):
    ``FedRSCLIP (w/o DPA, DP central, z = 4)`` -> ``FedRSCLIP (w/o DPA)``; ``label`` itself when
    ``tag`` is empty."""
    if not tag:
        return label
    part = privacy_label(tag)
    return label.replace(f", {part})", ")").removesuffix(f" ({part})")


def row_identity(section: Mapping[str, Any], privacy: Mapping[str, Any] | None = None) -> RowIdentity:
    """The study row a method section (a params file's ``method:``) belongs to, trained under
    the run's ``privacy`` section (None: without DP).

    ``promptfl`` with ``visual_tokens > 0`` is ``promptfl-vpt``; ``fedotp`` with ``matching:
    ensemble`` (or the older ``average``, read as it) is ``fedotp-ensemble``; ``centralised`` with
    ``steps_per_round: matched`` is ``centralised-matched``; FedRSCLIP-family sections add their
    :func:`ablation_tags` and :func:`sensitivity_tags` (``fedrsclip-no-dpa``,
    ``fedrsclip-visual-shared``, ``fedrsclip-m8``). Everything else is the registry name. A DP run
    adds its :func:`privacy_tag` last (``fedrsclip-dp-central-z4``); without DP the key is the
    method section's alone.
    """
    name = str(section.get("name", "?"))
    if name == "promptfl" and int(section.get("visual_tokens") or 0) > 0:
        base, ablation, sensitivity = "promptfl-vpt", (), ()
    elif name == "fedotp" and section.get("matching") in ("ensemble", "average"):
        base, ablation, sensitivity = "fedotp-ensemble", (), ()
    elif name not in FEDRSCLIP_FAMILY:
        base, ablation, sensitivity = name, (), ()
    else:
        base = "centralised-matched" if name == "centralised" and section.get("steps_per_round") == "matched" \
            else name
        ablation, sensitivity = tuple(ablation_tags(section)), tuple(sensitivity_tags(section))
    tag = privacy_tag(privacy)
    key = "-".join([base, *ablation, *sensitivity] + ([tag] if tag else []))
    return RowIdentity(key, base, ablation, sensitivity, tag)


def row_key(section: Mapping[str, Any], privacy: Mapping[str, Any] | None = None) -> str:
    """The row key of a method section under a run's ``privacy`` section (:func:`row_identity`):
    its params files' name prefix and the report's row."""
    return row_identity(section, privacy).key


def sensitivity_label(tag: str) -> str:
    """``m8`` -> ``M = 8``, ``dpa-kl`` -> ``DPA: kl``, ``lambda_dpa10`` -> ``λ_DPA = 10``."""
    for prefix in ("lambda_dpa", "lambda_cma", "dpa-", "m"):
        if tag.startswith(prefix) and tag[len(prefix):]:
            return _SENSITIVITY_LABELS[prefix].format(tag[len(prefix):])
    return tag


def variant_of(switches: Mapping[str, Any]) -> str:
    """The ablation variant label of a FedRSCLIP method section (or its switches): ``full`` when
    nothing is switched off. Kept for notebooks and older callers; rows use :func:`row_identity`."""
    return row_identity({**switches, "name": MAIN_METHOD, "n_ctx": None, "dpa": None}).variant or "full"


#: row key -> label of the rows the study names
_ROW_LABELS: dict[str, str] = {**{r.key: r.label for r in METHOD_ROWS}, **EXTRA_ROW_LABELS}

#: row keys in table order: the methods table's rows, the ablation's, then the sensitivity rows
ROW_ORDER: tuple[str, ...] = tuple(dict.fromkeys(
    [k for r in METHOD_ROWS for k in ([r.key, "fedotp-ensemble"] if r.key == "fedotp" else [r.key])]
    + [v.key for v in ABLATIONS]
    + [f"{MAIN_METHOD}-m{n}" for n in PROMPT_LENGTHS if n != DEFAULT_PROMPT_LENGTH]
    + [f"{MAIN_METHOD}-dpa-{k}" for k in DPA_KINDS[1:]]
    + [f"{MAIN_METHOD}-{t}{_num(w)}" for t in ("lambda_dpa", "lambda_cma") for w in LAMBDAS if w != 1.0]))


#: the scene datasets of the study, in table order
STUDY_DATASETS: tuple[str, ...] = ("UCMerced", "RSSCN7", "EuroSAT", "AID-holdout")
#: the cross-domain benchmark of the study: one group of clients per dataset (natural clients)
CROSS_DOMAIN = "Fed-CrossDomain"
#: datasets in table order (others follow, sorted)
DATASET_ORDER: tuple[str, ...] = STUDY_DATASETS + (CROSS_DOMAIN, "OPTIMAL-31", "NWPU-RESISC45")
#: how tables and figures name a dataset: AID-holdout's classes (and the evaluation template)
#: appear in the backbone's pretraining captions, its images do not
DATASET_LABELS: dict[str, str] = {"AID-holdout": "AID-holdout (seen classes, unseen images)",
                                  CROSS_DOMAIN: "Cross-domain (natural clients)"}


def dataset_label(name: str) -> str:
    """The readable name of a dataset in tables and figures."""
    return DATASET_LABELS.get(name, name)


__all__ = [
    "ABLATIONS", "ABLATION_LABELS", "ABLATION_SWITCHES", "ABLATION_VARIANTS", "AblationVariant", "CROSS_DOMAIN",
    "DATASET_LABELS", "DATASET_ORDER", "DEFAULT_PROMPT_LENGTH", "DPA_KINDS", "DP_TAG_PREFIX", "EXTRA_ROW_LABELS",
    "FEDRSCLIP_FAMILY", "LAMBDAS", "MAIN_METHOD", "METHODS", "METHOD_LABELS", "METHOD_ROWS", "PROMPT_LENGTHS",
    "REFERENCE_ROW", "ROW_ORDER", "RowIdentity", "STUDY_DATASETS", "STUDY_DEFAULTS", "SWITCH_KEYS", "StudyRow",
    "ablation_tags", "clear_label", "clear_row", "dataset_label", "method_label", "privacy_label", "privacy_tag",
    "row_identity", "row_key", "sensitivity_label", "sensitivity_tags", "variant_of",
]
