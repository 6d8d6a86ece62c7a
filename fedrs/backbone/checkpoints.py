"""Known remote-sensing CLIP checkpoints and the plain CLIP tags they start from: a registry.

One frozen :class:`CheckpointEntry` per published checkpoint says how to load it right:

* ``architecture``: the open_clip model name, *including* the activation. CLIP checkpoints that
  descend from OpenAI's weights were trained with QuickGELU (``x * sigmoid(1.702 x)``); building
  them under a plain-GELU config (or the reverse) loads without any error and gives silently
  wrong features (open_clip issue #771). open_clip names the QuickGELU variants ``*-quickgelu``.
* ``layout``: how the project saved its file (a plain ``state_dict``, an open_clip training
  checkpoint ``{'state_dict': {'module.<key>': ...}}``, or the ITRA training layout with
  ``text_backbone.``/``image_backbone.`` prefixes). ``fedrs.backbone.factory`` normalises every
  layout in :data:`LAYOUTS` the same way, known file or not.
* ``may_miss``: state-dict keys the published file may lack (loading is strict otherwise).
* ``figures``: the published zero-shot / retrieval numbers, each with its dataset, template set,
  metric and source, so a measurement can be checked against them (:func:`published_figures`).

``create_backbone`` recognises a file by its name (the path's last parts) or by its sha256
(:func:`identify_checkpoint`) and applies the entry's recipe. This module is data plus lookups and
formatting; loading lives in ``fedrs.backbone.factory``.

Where no figure or checksum could be found in a primary source the field is empty and the entry's
``notes`` say so. Figures are percentages as published (top-1 accuracy, or mean recall = the mean of
R@1/5/10 in both retrieval directions).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePath

from fedrs.errors import BackboneError

QUICK_GELU = "QuickGELU"
GELU = "GELU"
ACTIVATIONS = (QUICK_GELU, GELU)
_QUICKGELU_SUFFIX = "-quickgelu"


@dataclass(frozen=True)
class KeyLayout:
    """How a project saved its weights, and the renames that make them an open_clip state dict.

    ``wrappers``: dict keys whose value is the state dict (training checkpoints);
    ``strip_prefix``: a prefix every key carries (``module.`` from DistributedDataParallel);
    ``renames``: ``(old_prefix, new_prefix)`` pairs applied after stripping; ``marker``: a key
    prefix that only this layout has (how the layout is recognised in an unknown file).
    """

    name: str
    description: str
    wrappers: tuple[str, ...] = ()
    strip_prefix: str = ""
    renames: tuple[tuple[str, str], ...] = ()
    marker: str = ""
    source: str = ""


OPEN_CLIP_STATE_DICT = KeyLayout(
    "open_clip", "a plain open_clip state dict, torch.save(model.state_dict())",
    source="open_clip src/open_clip/factory.py load_checkpoint",
)
OPEN_CLIP_TRAINING = KeyLayout(
    "open_clip-training",
    "an open_clip training checkpoint: {'epoch', 'name', 'state_dict': {'module.<key>': tensor}, "
    "'optimizer', ...} (DistributedDataParallel prefixes every key with 'module.')",
    wrappers=("state_dict", "model"), strip_prefix="module.",
    source="open_clip src/training/main.py checkpoint dict; open_clip factory.load_state_dict "
           "unwraps 'state_dict' and strips 'module'",
)
ITRA_TRAINING = KeyLayout(
    "itra-training",
    "an ITRA training checkpoint (RemoteCLIP's and GeoRSCLIP's trainer): {'state_dict': "
    "{'module.text_backbone.<key>', 'module.image_backbone.<visual key>', 'module.logit_scale'}}",
    wrappers=("state_dict", "model"), strip_prefix="module.",
    renames=(("text_backbone.", ""), ("image_backbone.", "visual.")),
    marker="text_backbone.",
    source="om-ai-lab/RS5M inference/convert_weight.py (text_backbone. -> '', image_backbone. -> "
           "visual.); ChenDelong1999/ITRA itra/model/model.py ItraModel (logit_scale moved to the top)",
)
#: every layout the loader normalises, most specific first
LAYOUTS: tuple[KeyLayout, ...] = (ITRA_TRAINING, OPEN_CLIP_TRAINING, OPEN_CLIP_STATE_DICT)


@dataclass(frozen=True)
class PublishedFigure:
    """One published number for a checkpoint.

    ``dataset`` uses fedrs dataset names where one exists (``EuroSAT``, ``AID``,
    ``NWPU-RESISC45``, ``RSICD``, ``RSITMD``); ``templates`` is a short id of the prompt set
    (see :data:`TEMPLATE_SETS`), ``""`` for retrieval; ``value`` is in percent.
    """

    task: str  # "zero-shot classification" | "zero-shot retrieval" | "fine-tuned retrieval"
    dataset: str
    metric: str  # "top-1" | "mean recall"
    value: float
    templates: str
    source: str
    note: str = ""


#: prompt sets the published figures used (id -> description); fedrs's own sets are listed so
#: a caller can say whether a measurement used the same one
TEMPLATE_SETS: dict[str, str] = {
    "fedrs-single": "fedrs: 'a satellite photo of a {}.' (fedrs.backbone.templates.SINGLE_TEMPLATE)",
    "fedrs-rs8": "fedrs: the 8-template remote-sensing ensemble (fedrs.backbone.templates.RS_TEMPLATES)",
    "datacomp": "CLIP_benchmark per-dataset templates, as in DataComp's 38-dataset evaluation "
                "(open_clip docs/PRETRAINED.md 'following Gadre et al., 2023')",
    "georsclip-105": "GeoRSCLIP: 105 templates, CLIP's ImageNet phrasings with 'remote sensing image', "
                     "'aerial image' and 'satellite image' (om-ai-lab/RS5M "
                     "inference/classname_and_prompt/RS*.py)",
    "skyscript": "SkyScript: per-dataset template lists (wangzhecheng/SkyScript prompt_templates.py)",
}


@dataclass(frozen=True)
class CheckpointEntry:
    """The recipe for one published checkpoint (or one open_clip hub tag)."""

    key: str
    family: str
    title: str
    architecture: str  # open_clip model name, activation included ("ViT-B-32-quickgelu")
    activation: str  # QUICK_GELU or GELU, must agree with the architecture's config
    activation_source: str
    layout: KeyLayout
    url: str
    file_names: tuple[str, ...] = ()  # glob patterns on the path's last parts
    sha256: tuple[str, ...] = ()
    hub_tag: str = ""  # open_clip pretrained tag for the plain CLIPs
    may_miss: tuple[str, ...] = ()
    figures: tuple[PublishedFigure, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""

    @property
    def base_architecture(self) -> str:
        return base_architecture(self.architecture)


# --- sources ----------------------------------------------------------------------------------

_REMOTECLIP_HF = "https://huggingface.co/chendelong/RemoteCLIP (commit bf1d8a3, 'Upload 3 files', LFS oids)"
_REMOTECLIP_ACT = (
    "QuickGELU: RemoteCLIP was trained with ITRA, which builds both towers with open_clip "
    "create_model_and_transforms(..., pretrained='openai') (ChenDelong1999/ITRA itra/model/model.py; "
    "--image-model-tag defaults to 'openai', itra/training/params.py); until open_clip PR #970 "
    "(Oct 2024) the 'openai' tag always built QuickGELU whatever the config (issue #771), and the "
    "official evaluation script remoteclip_retrieval.py builds the same way. The README's snippet "
    "create_model_and_transforms('ViT-B-32') builds GELU: the silent mismatch of issue #771"
)
_REMOTECLIP_NOTES = (
    "Published figures: none registered. The README's result tables are images "
    "(assets/table-2.png, leaderboards) and the paper's tables (arXiv 2306.11029) could not be read "
    "from the sources available here; add them with their table numbers when checked."
)
_GEORSCLIP_README = ("om-ai-lab/RS5M README.md, 'GeoRSCLIP Model / Experiment Result / All tasks' "
                     "(same table on huggingface.co/Zilun/GeoRSCLIP)")
_GEORSCLIP_FT_README = "om-ai-lab/RS5M README.md, 'RSCTIR Task' tables (RSICD / RSITMD test sets)"
_GEORSCLIP_B32_ACT = (
    "QuickGELU: the authors' loader builds create_model_and_transforms('ViT-B/32', pretrained='openai') "
    "(RS5M inference/inference.py, HF model card; tested with torch 2.0.1/2.1.0, i.e. open_clip before "
    "PR #970, where the 'openai' tag always built QuickGELU), and convert_weight.py starts from the "
    "same OpenAI model"
)
_GEORSCLIP_NOTES = (
    "The authors load with strict=False but name no missing key; the published files are plain "
    "open_clip state dicts (HF lists only OrderedDict/tensor pickle imports). The ITRA training layout "
    "(convert_weight.py) is normalised too. sha256 of this file: not found in a primary source."
)
_SKYSCRIPT_README = "wangzhecheng/SkyScript README.md, 'Testing zero-shot classification' table"
_SKYSCRIPT_URL = "https://opendatasharing.s3.us-west-2.amazonaws.com/SkyScript/ckpt/{}.zip"
_SKYCLIP_L14_ACT = (
    "QuickGELU: initialised from OpenAI ViT-L-14 (README 'Training': --pretrained openai for ViT-L-14); "
    "the authors' evaluation adds --force-quick-gelu for every ViT-L-14 'because the ViT-L-14 model is "
    "initialized with the OpenAI model' (test_scene_and_fine_grained_classification.ipynb, "
    "cross_modal_retrieval.ipynb)"
)
_SKYCLIP_NOTES = (
    "The zip holds an open_clip training checkpoint epoch_20.pt in a folder named like the zip "
    "(path as extracted by elkhouryk/RS-TransCLIP feature_generator/featuregeneration.py; 20 epochs per "
    "the README's training command). sha256: not published."
)
_SKYCLIP_7 = "SkyScript 7-set mean"
_SKYCLIP_7_NOTE = "mean top-1 over AID, EuroSAT, fMoW, MillionAID, PatternNet, NWPU-RESISC45, RSI-CB256"
_OPENCLIP_CSV = ("mlfoundations/open_clip docs/openclip_classification_results.csv "
                 "(commit 05e7db49), columns EuroSAT and RESISC45")
_OPENAI_SHA = ("sha256 = the folder name in OpenAI's download URL (open_clip pretrained.py), which "
               "openai/CLIP clip.py checks after download")


def _fig(task, dataset, metric, value, templates, source, note="") -> PublishedFigure:
    return PublishedFigure(task, dataset, metric, value, templates, source, note)


def _zs(dataset, value, templates, source, note="") -> PublishedFigure:
    return _fig("zero-shot classification", dataset, "top-1", value, templates, source, note)


def _openclip_zs(eurosat: float, resisc: float) -> tuple[PublishedFigure, ...]:
    return (_zs("EuroSAT", eurosat, "datacomp", _OPENCLIP_CSV),
            _zs("NWPU-RESISC45", resisc, "datacomp", _OPENCLIP_CSV))


def _georsclip_figures(eurosat, resisc, aid, rsitmd_mr, rsicd_mr) -> tuple[PublishedFigure, ...]:
    note = "the authors' test split (rs5m_test_data.zip on the HF model card)"
    return (
        _zs("EuroSAT", eurosat, "georsclip-105", _GEORSCLIP_README, note),
        _zs("NWPU-RESISC45", resisc, "georsclip-105", _GEORSCLIP_README, note),
        _zs("AID", aid, "georsclip-105", _GEORSCLIP_README, note),
        _fig("zero-shot retrieval", "RSITMD", "mean recall", rsitmd_mr, "", _GEORSCLIP_README, "test set"),
        _fig("zero-shot retrieval", "RSICD", "mean recall", rsicd_mr, "", _GEORSCLIP_README, "test set"),
    )


def _openai(arch: str, sha: str, eurosat: float, resisc: float) -> CheckpointEntry:
    name = arch.replace("-", "/", 1) if arch.startswith("ViT") else arch
    return CheckpointEntry(
        key=f"openai-{arch.lower()}", family="OpenAI CLIP", title=f"OpenAI CLIP {name}",
        architecture=f"{arch}-quickgelu", activation=QUICK_GELU,
        activation_source="QuickGELU: OpenAI's CLIP (open_clip pretrained.py marks every 'openai' tag quick_gelu=True)",
        layout=OPEN_CLIP_STATE_DICT, hub_tag="openai",
        url=f"open_clip tag '{arch}' / 'openai' (original TorchScript file {arch}.pt from openaipublic.azureedge.net)",
        sha256=(sha,), figures=_openclip_zs(eurosat, resisc),
        sources=(_OPENAI_SHA, _OPENCLIP_CSV),
        notes="Recognised by sha256 only: the original file names (RN50.pt, ViT-B-32.pt) are too generic. "
              "The original files are TorchScript archives; the factory reads their weights with torch.jit.load.",
    )


CHECKPOINTS: tuple[CheckpointEntry, ...] = (
    # --- RemoteCLIP (Liu, Chen et al., arXiv 2306.11029; github.com/ChenDelong1999/RemoteCLIP) ---
    CheckpointEntry(
        key="remoteclip-rn50", family="RemoteCLIP", title="RemoteCLIP ResNet-50",
        architecture="RN50-quickgelu", activation=QUICK_GELU,
        activation_source=_REMOTECLIP_ACT + " (RN50: only the text tower has GELU layers)",
        layout=OPEN_CLIP_STATE_DICT, url=_REMOTECLIP_HF,
        file_names=("RemoteCLIP-RN50.pt",),
        sha256=("11657d33a87fc197e19a7654a76a632415ebea42feb8a61025ef389f8990c0f9",),
        sources=(_REMOTECLIP_HF,
                 "ChenDelong1999/RemoteCLIP README.md 'Load RemoteCLIP' (strict model.load_state_dict)"),
        notes=_REMOTECLIP_NOTES,
    ),
    CheckpointEntry(
        key="remoteclip-vit-b-32", family="RemoteCLIP", title="RemoteCLIP ViT-B/32",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU, activation_source=_REMOTECLIP_ACT,
        layout=OPEN_CLIP_STATE_DICT, url=_REMOTECLIP_HF,
        file_names=("RemoteCLIP-ViT-B-32.pt",),
        sha256=("60014e395d930a3f2963d1d89c8522bf4ad56775571e4356e866864789af85c4",),
        sources=(_REMOTECLIP_HF,
                 "ChenDelong1999/RemoteCLIP README.md 'Load RemoteCLIP' (strict model.load_state_dict)"),
        notes=_REMOTECLIP_NOTES,
    ),
    CheckpointEntry(
        key="remoteclip-vit-l-14", family="RemoteCLIP", title="RemoteCLIP ViT-L/14",
        architecture="ViT-L-14-quickgelu", activation=QUICK_GELU, activation_source=_REMOTECLIP_ACT,
        layout=OPEN_CLIP_STATE_DICT, url=_REMOTECLIP_HF,
        file_names=("RemoteCLIP-ViT-L-14.pt",),
        sha256=("fcc2a7e21e171f4ffcb7a9c0206b8b74ac0c9eb83c67b576958b7a4ed6c8cecb",),
        sources=(_REMOTECLIP_HF,
                 "ChenDelong1999/RemoteCLIP README.md 'Load RemoteCLIP' (strict model.load_state_dict)"),
        notes=_REMOTECLIP_NOTES,
    ),
    # --- GeoRSCLIP (Zhang et al., RS5M, arXiv 2306.11300; github.com/om-ai-lab/RS5M) ---
    CheckpointEntry(
        key="georsclip-vit-b-32", family="GeoRSCLIP", title="GeoRSCLIP ViT-B/32 (RS5M)",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU, activation_source=_GEORSCLIP_B32_ACT,
        layout=OPEN_CLIP_STATE_DICT, url="https://huggingface.co/Zilun/GeoRSCLIP ckpt/RS5M_ViT-B-32.pt",
        file_names=("RS5M_ViT-B-32.pt",),
        figures=_georsclip_figures(61.40, 72.74, 74.42, 35.33, 26.06),
        sources=(_GEORSCLIP_README, "om-ai-lab/RS5M inference/inference.py, inference/convert_weight.py"),
        notes=_GEORSCLIP_NOTES,
    ),
    CheckpointEntry(
        key="georsclip-vit-h-14", family="GeoRSCLIP", title="GeoRSCLIP ViT-H/14 (RS5M)",
        architecture="ViT-H-14", activation=GELU,
        activation_source="GELU: the authors' loader builds create_model_and_transforms('ViT-H/14', "
                          "pretrained='laion2b_s32b_b79k') (RS5M inference/inference.py, HF model card), a "
                          "GELU tag in open_clip pretrained.py",
        layout=OPEN_CLIP_STATE_DICT, url="https://huggingface.co/Zilun/GeoRSCLIP ckpt/RS5M_ViT-H-14.pt (3.94 GB)",
        file_names=("RS5M_ViT-H-14.pt",),
        figures=_georsclip_figures(67.47, 73.83, 76.33, 40.38, 28.48),
        sources=(_GEORSCLIP_README, "om-ai-lab/RS5M inference/inference.py"),
        notes=_GEORSCLIP_NOTES,
    ),
    CheckpointEntry(
        key="georsclip-vit-b-32-ft-rsicd", family="GeoRSCLIP", title="GeoRSCLIP-FT ViT-B/32, tuned on RS5M + RSICD",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU,
        activation_source="QuickGELU, inferred: fine-tuned from GeoRSCLIP ViT-B/32 (README 'GVLM + FT'); "
                          + _GEORSCLIP_B32_ACT,
        layout=OPEN_CLIP_STATE_DICT,
        url="https://huggingface.co/Zilun/GeoRSCLIP ckpt/RS5M_ViT-B-32_RSICD.pt (commit 4920188)",
        file_names=("RS5M_ViT-B-32_RSICD.pt",),
        sha256=("ee59f4c887683eab01a638902ee90bea03ec7e1d3689af1c6218255153ad3313",),
        figures=(_fig("fine-tuned retrieval", "RSICD", "mean recall", 38.00, "", _GEORSCLIP_FT_README,
                      "row 'GeoRSCLIP-FT, RS5M + RSICD'; the file is matched to the row by its name"),),
        sources=(_GEORSCLIP_FT_README, "huggingface.co/Zilun/GeoRSCLIP commit 4920188 (LFS oid)"),
    ),
    CheckpointEntry(
        key="georsclip-vit-b-32-ft-rsitmd", family="GeoRSCLIP", title="GeoRSCLIP-FT ViT-B/32, tuned on RS5M + RSITMD",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU,
        activation_source="QuickGELU, inferred: fine-tuned from GeoRSCLIP ViT-B/32 (README 'GVLM + FT'); "
                          + _GEORSCLIP_B32_ACT,
        layout=OPEN_CLIP_STATE_DICT,
        url="https://huggingface.co/Zilun/GeoRSCLIP ckpt/RS5M_ViT-B-32_RSITMD.pt (commit 26daa7e)",
        file_names=("RS5M_ViT-B-32_RSITMD.pt",),
        sha256=("6f2324cebcabb60e148b1ae8502bf247fb0d03cacf271ad2535a4462f2a8fb6d",),
        figures=(_fig("fine-tuned retrieval", "RSITMD", "mean recall", 50.10, "", _GEORSCLIP_FT_README,
                      "row 'GeoRSCLIP-FT, RS5M + RSITMD'; the file is matched to the row by its name"),),
        sources=(_GEORSCLIP_FT_README, "huggingface.co/Zilun/GeoRSCLIP commit 26daa7e (LFS oid)"),
    ),
    CheckpointEntry(
        key="georsclip-vit-b-32-ft-ret2", family="GeoRSCLIP", title="GeoRSCLIP-FT ViT-B/32, tuned on RS5M + RET-2",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU,
        activation_source="QuickGELU, inferred: fine-tuned from GeoRSCLIP ViT-B/32 (README 'GVLM + FT'); "
                          + _GEORSCLIP_B32_ACT,
        layout=OPEN_CLIP_STATE_DICT, url="https://huggingface.co/Zilun/GeoRSCLIP ckpt/RS5M_ViT-B-32_RET-2.pt",
        file_names=("RS5M_ViT-B-32_RET-2.pt", "RS5M_ViT-B-32_retrieval.pt", "RS5M_ViT-B-32-Retrieval.pt"),
        figures=(
            _fig("fine-tuned retrieval", "RSICD", "mean recall", 38.87, "", _GEORSCLIP_FT_README,
                 "row 'GeoRSCLIP-FT, RS5M + RET-2'"),
            _fig("fine-tuned retrieval", "RSITMD", "mean recall", 51.81, "", _GEORSCLIP_FT_README,
                 "row 'GeoRSCLIP-FT, RS5M + RET-2'"),
        ),
        sources=(_GEORSCLIP_FT_README, "huggingface.co/Zilun/GeoRSCLIP ckpt history (renamed from "
                                       "RS5M_ViT-B-32-Retrieval.pt, then RS5M_ViT-B-32_retrieval.pt)"),
        notes="sha256: not found in a primary source.",
    ),
    # --- SkyCLIP (Wang et al., SkyScript, AAAI 2024, arXiv 2312.12856; github.com/wangzhecheng/SkyScript) ---
    CheckpointEntry(
        key="skyclip-vit-b-32-top50pct", family="SkyCLIP", title="SkyCLIP ViT-B/32, SkyScript top 50%",
        architecture="ViT-B-32", activation=GELU,
        activation_source="GELU: initialised from open_clip laion2b_e16 (README 'Training': --pretrained "
                          "laion2b_e16 for ViT-B-32; a GELU tag), and the authors' evaluation builds ViT-B-32 "
                          "without --force-quick-gelu (cross_modal_retrieval.ipynb)",
        layout=OPEN_CLIP_TRAINING, url=_SKYSCRIPT_URL.format("SkyCLIP_ViT_B32_top50pct"),
        file_names=("SkyCLIP_ViT_B32_top50pct/epoch_*.pt",),
        figures=(_zs(_SKYCLIP_7, 53.02, "skyscript", _SKYSCRIPT_README, _SKYCLIP_7_NOTE),),
        sources=(_SKYSCRIPT_README, "elkhouryk/RS-TransCLIP feature_generator/featuregeneration.py (file path)"),
        notes=_SKYCLIP_NOTES,
    ),
    CheckpointEntry(
        key="skyclip-vit-l-14-top30pct", family="SkyCLIP", title="SkyCLIP ViT-L/14, SkyScript top 30%",
        architecture="ViT-L-14-quickgelu", activation=QUICK_GELU, activation_source=_SKYCLIP_L14_ACT,
        layout=OPEN_CLIP_TRAINING, url=_SKYSCRIPT_URL.format("SkyCLIP_ViT_L14_top30pct"),
        file_names=("SkyCLIP_ViT_L14_top30pct/epoch_*.pt",),
        figures=(_zs(_SKYCLIP_7, 59.91, "skyscript", _SKYSCRIPT_README, _SKYCLIP_7_NOTE),),
        sources=(_SKYSCRIPT_README, "elkhouryk/RS-TransCLIP feature_generator/featuregeneration.py (file path)"),
        notes=_SKYCLIP_NOTES,
    ),
    CheckpointEntry(
        key="skyclip-vit-l-14-top50pct", family="SkyCLIP", title="SkyCLIP ViT-L/14, SkyScript top 50%",
        architecture="ViT-L-14-quickgelu", activation=QUICK_GELU, activation_source=_SKYCLIP_L14_ACT,
        layout=OPEN_CLIP_TRAINING, url=_SKYSCRIPT_URL.format("SkyCLIP_ViT_L14_top50pct"),
        file_names=("SkyCLIP_ViT_L14_top50pct/epoch_*.pt",),
        figures=(_zs(_SKYCLIP_7, 59.93, "skyscript", _SKYSCRIPT_README,
                     _SKYCLIP_7_NOTE + "; the README row reads 'SkyCLIP_ViT_B32_top50pct | CLIP ViT-L14', "
                     "taken as this ViT-L/14 top-50% checkpoint (the ViT-B/32 one has its own row, 53.02)"),),
        sources=(_SKYSCRIPT_README, "elkhouryk/RS-TransCLIP feature_generator/featuregeneration.py (file path)"),
        notes=_SKYCLIP_NOTES,
    ),
    CheckpointEntry(
        key="skyclip-vit-l-14-top30pct-laion-rs-filter", family="SkyCLIP",
        title="SkyCLIP ViT-L/14, SkyScript top 30% filtered by CLIP-laion-RS",
        architecture="ViT-L-14-quickgelu", activation=QUICK_GELU, activation_source=_SKYCLIP_L14_ACT,
        layout=OPEN_CLIP_TRAINING, url=_SKYSCRIPT_URL.format("SkyCLIP_ViT_L14_top30pct_filtered_by_CLIP_laion_RS"),
        file_names=("SkyCLIP_ViT_L14_top30pct_filtered_by_CLIP_laion_RS/epoch_*.pt",),
        figures=(_zs(_SKYCLIP_7, 60.69, "skyscript", _SKYSCRIPT_README, _SKYCLIP_7_NOTE),),
        sources=(_SKYSCRIPT_README,),
        notes=_SKYCLIP_NOTES + " The folder name inside this zip is assumed to follow the others.",
    ),
    CheckpointEntry(
        key="clip-vit-l-14-laion-rs", family="SkyCLIP",
        title="CLIP ViT-L/14 continually pretrained on LAION-2B's RS subset (SkyScript)",
        architecture="ViT-L-14-quickgelu", activation=QUICK_GELU, activation_source=_SKYCLIP_L14_ACT,
        layout=OPEN_CLIP_TRAINING, url=_SKYSCRIPT_URL.format("CLIP_ViT_L14_LAION_RS"),
        file_names=("CLIP_ViT_L14_LAION_RS/epoch_*.pt",),
        figures=(_zs(_SKYCLIP_7, 57.87, "skyscript", _SKYSCRIPT_README, _SKYCLIP_7_NOTE),),
        sources=(_SKYSCRIPT_README, "elkhouryk/RS-TransCLIP feature_generator/featuregeneration.py (file path)"),
        notes=_SKYCLIP_NOTES,
    ),
    # --- plain CLIPs: the open_clip tags the RS checkpoints start from ---
    _openai("RN50", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", 40.81, 45.21),
    _openai("ViT-B-32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", 50.44, 53.62),
    _openai("ViT-B-16", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", 55.94, 58.22),
    _openai("ViT-L-14", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", 62.63, 63.37),
    CheckpointEntry(
        key="laion2b-s34b-b79k-vit-b-32", family="LAION CLIP", title="OpenCLIP ViT-B/32 LAION-2B (s34b b79k)",
        architecture="ViT-B-32", activation=GELU,
        activation_source="GELU: open_clip pretrained.py (no quick_gelu flag on this tag)",
        layout=OPEN_CLIP_STATE_DICT, hub_tag="laion2b_s34b_b79k",
        url="huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_pytorch_model.bin",
        sha256=("1bd3c7172de5b207ceac554f5ab5266166f3b9baccc9af5989bc801016d080ad",),
        figures=_openclip_zs(48.06, 61.06),
        sources=(_OPENCLIP_CSV, "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_pytorch_model.bin "
                                "(initial commit 11e0f39, LFS SHA256)"),
        notes="Recognised by sha256 only (open_clip_pytorch_model.bin is every hub model's file name).",
    ),
    CheckpointEntry(
        key="laion2b-e16-vit-b-32", family="LAION CLIP",
        title="OpenCLIP ViT-B/32 LAION-2B (e16), SkyCLIP ViT-B/32's start",
        architecture="ViT-B-32", activation=GELU,
        activation_source="GELU: open_clip pretrained.py (no quick_gelu flag on this tag)",
        layout=OPEN_CLIP_STATE_DICT, hub_tag="laion2b_e16",
        url="https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/vit_b_32-laion2b_e16-af8dbd0c.pth",
        file_names=("vit_b_32-laion2b_e16-af8dbd0c.pth",),
        figures=_openclip_zs(50.30, 61.90), sources=(_OPENCLIP_CSV,),
        notes="sha256: open_clip's release name carries only its first 8 hex digits (af8dbd0c).",
    ),
    CheckpointEntry(
        key="laion400m-e32-vit-b-32", family="LAION CLIP",
        title="OpenCLIP ViT-B/32 LAION-400M (e32), a QuickGELU LAION model",
        architecture="ViT-B-32-quickgelu", activation=QUICK_GELU,
        activation_source="QuickGELU: open_clip pretrained.py marks laion400m_e31/e32 quick_gelu=True "
                          "(file name vit_b_32-quickgelu-...)",
        layout=OPEN_CLIP_STATE_DICT, hub_tag="laion400m_e32",
        url="https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/vit_b_32-quickgelu-laion400m_e32-46683a32.pt",
        file_names=("vit_b_32-quickgelu-laion400m_e32-46683a32.pt",),
        sha256=("46683a32721d5c68911153698992361285d20ca690bb4f317c11e45c03d798fa",),
        figures=_openclip_zs(51.43, 54.54),
        sources=(_OPENCLIP_CSV, "sha256 from the mirror huggingface.co/jinaai/clip-models ViT-B-32-laion400m_e32.pt "
                                "(LFS SHA256, its first 8 digits match open_clip's file name)"),
    ),
    CheckpointEntry(
        key="laion2b-s32b-b79k-vit-h-14", family="LAION CLIP",
        title="OpenCLIP ViT-H/14 LAION-2B, GeoRSCLIP ViT-H/14's start",
        architecture="ViT-H-14", activation=GELU,
        activation_source="GELU: open_clip pretrained.py (no quick_gelu flag on this tag)",
        layout=OPEN_CLIP_STATE_DICT, hub_tag="laion2b_s32b_b79k",
        url="huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        figures=_openclip_zs(72.78, 69.95), sources=(_OPENCLIP_CSV,),
        notes="Hub tag only: no file name or sha256 registered.",
    ),
)

_BY_KEY = {entry.key: entry for entry in CHECKPOINTS}


# --- lookups ------------------------------------------------------------------------------------

def base_architecture(model_name: str) -> str:
    """The open_clip name without its activation suffix (``ViT-B-32-quickgelu`` -> ``ViT-B-32``)."""
    return model_name[: -len(_QUICKGELU_SUFFIX)] if model_name.endswith(_QUICKGELU_SUFFIX) else model_name


def get_checkpoint(key: str) -> CheckpointEntry:
    """The registry entry called ``key``; an unknown key is a :class:`BackboneError` listing them."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise BackboneError(f"no registered checkpoint {key!r}; known: {', '.join(_BY_KEY)} "
                            f"(see `fedrs backbone list --all`)") from None


def _name_matches(path: PurePath, pattern: str) -> bool:
    depth = len(PurePath(pattern).parts)
    tail = "/".join(path.parts[-depth:])
    return fnmatch.fnmatchcase(tail, pattern)


def identify_checkpoint(path: str | PurePath, sha256: str | None = None) -> CheckpointEntry | None:
    """The entry whose published file ``path`` is: by name first, else by ``sha256`` (hex digest).

    A name pattern with a folder (``SkyCLIP_ViT_B32_top50pct/epoch_*.pt``) is matched against as
    many trailing path parts, so generic names such as ``epoch_20.pt`` are recognised only inside
    their published folder.
    """
    path = PurePath(path)
    for entry in CHECKPOINTS:
        if any(_name_matches(path, pattern) for pattern in entry.file_names):
            return entry
    if sha256:
        digest = sha256.lower()
        for entry in CHECKPOINTS:
            if digest in entry.sha256:
                return entry
    return None


def entry_for_hub_tag(model_name: str, tag: str) -> CheckpointEntry | None:
    """The entry for open_clip weights ``(model, tag)``, whatever activation suffix ``model`` has."""
    base = base_architecture(model_name)
    for entry in CHECKPOINTS:
        if entry.hub_tag == tag and entry.base_architecture == base:
            return entry
    return None


def detect_layout(keys, wrapped: bool) -> KeyLayout:
    """The layout of a state dict whose ``keys`` are already unwrapped and ``module.``-stripped;
    ``wrapped``: whether it sat in a training-checkpoint dict or carried the ``module.`` prefix."""
    keys = list(keys)
    for layout in LAYOUTS:
        if layout.marker and any(k.startswith(layout.marker) for k in keys):
            return layout
    return OPEN_CLIP_TRAINING if wrapped else OPEN_CLIP_STATE_DICT


def published_figures(entry: CheckpointEntry | str, dataset: str | None = None, task: str | None = None,
                      templates: str | None = None) -> list[PublishedFigure]:
    """Published figures of a registry entry (or its key), optionally only for one ``dataset``,
    ``task`` (substring, e.g. ``"zero-shot"``) or template-set id (see :data:`TEMPLATE_SETS`)."""
    entry = get_checkpoint(entry) if isinstance(entry, str) else entry
    return [f for f in entry.figures
            if (dataset is None or f.dataset == dataset)
            and (task is None or task in f.task)
            and (templates is None or f.templates == templates)]


# --- formatting (the CLI faces print these) -----------------------------------------------------

def format_figure(figure: PublishedFigure) -> str:
    """One line: ``published 61.40 top-1 (templates: georsclip-105; source: ...)``."""
    templates = f"templates: {figure.templates}; " if figure.templates else ""
    note = f"; {figure.note}" if figure.note else ""
    return (f"published {figure.value:.2f} {figure.metric} ({figure.task}, {figure.dataset}; "
            f"{templates}source: {figure.source}{note})")


def published_beside(entry: CheckpointEntry | str | None, dataset: str, measured_templates: str | None = None,
                     task: str = "zero-shot classification") -> list[str]:
    """Lines to print beside a measurement on ``dataset``: each published ``task`` figure of the
    entry for that exact dataset name, saying when its template set differs from the measured one
    (an id of :data:`TEMPLATE_SETS`, e.g. ``"fedrs-single"``). Empty for ``entry=None``.

    Dataset names must match exactly: fedrs's ``AID-holdout`` is not the ``AID`` of a paper.
    """
    if entry is None:
        return []
    lines = []
    for figure in published_figures(entry, dataset=dataset, task=task):
        line = format_figure(figure)
        if measured_templates and figure.templates and figure.templates != measured_templates:
            line += f" [different templates: measured with {measured_templates}]"
        lines.append(line)
    return lines


def registry_rows() -> list[dict]:
    """Plain-data rows for ``fedrs backbone list --all --json``: one per entry."""
    rows = []
    for e in CHECKPOINTS:
        rows.append({
            "key": e.key, "family": e.family, "title": e.title, "architecture": e.architecture,
            "activation": e.activation, "hub_tag": e.hub_tag or None, "file_names": list(e.file_names),
            "sha256": list(e.sha256), "layout": e.layout.name, "may_miss": list(e.may_miss), "url": e.url,
            "activation_source": e.activation_source,
            "figures": [f.__dict__.copy() for f in e.figures], "sources": list(e.sources), "notes": e.notes,
        })
    return rows


def format_registry(detail: bool = False) -> str:
    """The registry as text: one line per entry, or (``detail``) each recipe with its sources."""
    lines = ["Known checkpoints (create_backbone applies the recipe when it recognises the file or tag):",
             f"{'key':<42} {'open_clip model':<20} {'activation':<10} {'figures':<7} recognised by"]
    for e in CHECKPOINTS:
        by = [*e.file_names[:1]]
        if e.sha256:
            by.append(f"sha256 {e.sha256[0][:12]}...")
        if e.hub_tag:
            by.append(f"tag {e.hub_tag}")
        lines.append(f"{e.key:<42} {e.architecture:<20} {e.activation:<10} {len(e.figures) or '-':<7} "
                     f"{', '.join(by) or '-'}")
        if detail:
            lines.append(f"    {e.title}; weights: {e.url}")
            lines.append(f"    activation: {e.activation_source}")
            lines.append(f"    layout: {e.layout.name}: {e.layout.description}")
            if e.may_miss:
                lines.append(f"    may miss: {', '.join(e.may_miss)}")
            for f in e.figures:
                lines.append(f"    {format_figure(f)}")
            if e.notes:
                lines.append(f"    notes: {e.notes}")
    return "\n".join(lines)


def _check_registry() -> None:
    """Fail at import on a malformed entry (a typo here would silently mis-load weights)."""
    seen_names: set[str] = set()
    seen_sha: set[str] = set()
    for e in CHECKPOINTS:
        if e.activation not in ACTIVATIONS:
            raise ValueError(f"{e.key}: activation {e.activation!r} not in {ACTIVATIONS}")
        if (e.activation == QUICK_GELU) != e.architecture.endswith(_QUICKGELU_SUFFIX):
            raise ValueError(f"{e.key}: architecture {e.architecture!r} disagrees with activation {e.activation}")
        for sha in e.sha256:
            if not re.fullmatch(r"[0-9a-f]{64}", sha) or sha in seen_sha:
                raise ValueError(f"{e.key}: bad or duplicate sha256 {sha!r}")
            seen_sha.add(sha)
        for name in e.file_names:
            if name in seen_names:
                raise ValueError(f"{e.key}: file name {name!r} registered twice")
            seen_names.add(name)
        for f in e.figures:
            if f.templates and f.templates not in TEMPLATE_SETS:
                raise ValueError(f"{e.key}: unknown template set {f.templates!r}")
            if not f.source:
                raise ValueError(f"{e.key}: figure without a source")


_check_registry()

__all__ = [
    "QUICK_GELU", "GELU", "KeyLayout", "LAYOUTS", "OPEN_CLIP_STATE_DICT", "OPEN_CLIP_TRAINING", "ITRA_TRAINING",
    "PublishedFigure", "TEMPLATE_SETS", "CheckpointEntry", "CHECKPOINTS", "base_architecture", "get_checkpoint",
    "identify_checkpoint", "entry_for_hub_tag", "detect_layout", "published_figures", "published_beside",
    "format_figure", "registry_rows", "format_registry",
]
