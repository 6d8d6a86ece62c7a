"""The study's vocabulary: what it compares, under which names, in which order.

One home for the names that the params generator (``params/make_studies.py``), the tables
(:mod:`fedrs.study.tables`), the figures (:mod:`fedrs.study.plots`) and the benchmarks share:
method labels, the alignment-constraint ablation (variant label, params file tag and the method
switches that make it), prompt lengths and the order of datasets. The generator writes a variant's
switches into its params files and :func:`variant_of` reads them back from a run's configuration,
so both read this one table. Plain data only: nothing here imports pandas or torch.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

#: method registry name -> readable label, in table order (unknown methods follow, sorted)
METHOD_LABELS: dict[str, str] = {
    "zeroshot": "Zero-shot CLIP",
    "local": "Local-only",
    "promptfl": "PromptFL",
    "fedpgp": "FedPGP-style",
    "fedotp": "FedOTP-style",
    "fedrsclip": "FedRSCLIP",
    "centralised": "Centralised",
}
#: the methods of the study, in table order
METHODS: tuple[str, ...] = tuple(METHOD_LABELS)
#: the method whose variants make the constraint ablation and the prompt-length study
MAIN_METHOD = "fedrsclip"


def method_label(name: str) -> str:
    """The readable label of a method registry name (the name itself when the study has none)."""
    return METHOD_LABELS.get(name, name)


class AblationVariant(NamedTuple):
    """One variant of the alignment-constraint ablation of :data:`MAIN_METHOD`."""

    label: str                  #: its name in tables and figures
    tag: str                    #: its params files' name: ``fedrsclip-<tag>__<setting>.yaml``
    switches: dict[str, Any]    #: method-config keys the variant sets (empty: the full model)


#: the alignment-constraint ablation, in table order
ABLATIONS: tuple[AblationVariant, ...] = (
    AblationVariant("full", "", {}),
    AblationVariant("w/o DPA", "no-dpa", {"lambda_dpa": 0.0}),
    AblationVariant("w/o CMA", "no-cma", {"lambda_cma": 0.0}),
    AblationVariant("w/o DPA & CMA", "no-dpa-cma", {"lambda_dpa": 0.0, "lambda_cma": 0.0}),
    AblationVariant("w/o private prompts", "no-private", {"private_prompts": False}),
    AblationVariant("w/o visual prompts", "no-visual", {"visual_prompts": False}),
)
#: the ablation's variant labels, in table order
ABLATION_VARIANTS: tuple[str, ...] = tuple(v.label for v in ABLATIONS)
#: variant label -> the method-config switches that make it
ABLATION_SWITCHES: dict[str, dict[str, Any]] = {v.label: v.switches for v in ABLATIONS}
#: every method-config key an ablation variant sets
SWITCH_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for v in ABLATIONS for k in v.switches))


def variant_of(switches: Mapping[str, Any]) -> str:
    """The ablation variant a method configuration belongs to, from its :data:`SWITCH_KEYS`.

    ``lambda_dpa``/``lambda_cma`` equal to 0, ``private_prompts`` or ``visual_prompts`` false turn
    the part off; missing or ``None`` keys (the baselines have no such switches) leave it on, so a
    method without switches is ``full``. Switches that no single variant sets together are named
    together (``w/o DPA, private prompts``).
    """
    off = []
    dpa, cma = switches.get("lambda_dpa"), switches.get("lambda_cma")
    if dpa is not None and float(dpa) == 0 and cma is not None and float(cma) == 0:
        off.append("DPA & CMA")
    elif dpa is not None and float(dpa) == 0:
        off.append("DPA")
    elif cma is not None and float(cma) == 0:
        off.append("CMA")
    if switches.get("private_prompts") is False:
        off.append("private prompts")
    if switches.get("visual_prompts") is False:
        off.append("visual prompts")
    return "w/o " + ", ".join(off) if off else "full"


#: the specification's default prompt length (context tokens per text prompt)
DEFAULT_PROMPT_LENGTH = 4
#: the prompt lengths of the prompt-length study (the default one is the methods study's run)
PROMPT_LENGTHS: tuple[int, ...] = (4, 8, 16)

#: the scene datasets of the study's full grid, in table order
STUDY_DATASETS: tuple[str, ...] = ("UCMerced", "RSSCN7", "EuroSAT", "AID-holdout")
#: datasets in table order (others follow, sorted)
DATASET_ORDER: tuple[str, ...] = STUDY_DATASETS + ("OPTIMAL-31", "NWPU-RESISC45")


__all__ = [
    "ABLATIONS", "ABLATION_SWITCHES", "ABLATION_VARIANTS", "AblationVariant", "DATASET_ORDER",
    "DEFAULT_PROMPT_LENGTH", "MAIN_METHOD", "METHODS", "METHOD_LABELS", "PROMPT_LENGTHS",
    "STUDY_DATASETS", "SWITCH_KEYS", "method_label", "variant_of",
]
