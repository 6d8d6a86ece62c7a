"""``fedrs zeroshot``: zero-shot top-1 of a backbone on every imported scene dataset."""

from __future__ import annotations

from pathlib import Path


def cmd_zeroshot(args) -> int:
    from fedrs.backbone.checkpoints import published_beside
    from fedrs.backbone.factory import create_backbone
    from fedrs.backbone.templates import RS_TEMPLATES, SINGLE_TEMPLATE
    from fedrs.evaluate.zeroshot import EVAL_DATASETS, evaluate_zero_shot, write_zero_shot_table
    from fedrs.paths import results_root

    backbone = create_backbone(args.model, args.pretrained, strict=not args.no_strict)
    rows = evaluate_zero_shot(
        backbone, datasets=args.datasets or list(EVAL_DATASETS),
        templates=SINGLE_TEMPLATE, ensemble=None if args.no_ensemble else RS_TEMPLATES,
    )
    out = Path(args.out) if args.out else results_root() / "zero_shot"
    csv, md = write_zero_shot_table(rows, out)
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    entry = backbone.checkpoint_entry
    if entry is not None:
        # the published figure beside each measured one, so a user sees at once whether the
        # weights loaded right (a wrong activation or remapping drops accuracy far below it)
        print(f"\npublished figures for {entry.key} (registry: fedrs backbone list --all --detail):")
        for row in rows:
            for key, template_set in (("top1", "fedrs-single"), ("top1_ensemble", "fedrs-rs8")):
                if key not in row:
                    continue
                lines = published_beside(entry, row["dataset"], template_set)
                print(f"  {row['dataset']:<12} {key:<14} measured {row[key]:6.2f}   "
                      + ("; ".join(lines) if lines else "no published figure for this dataset"))
        if backbone.sha256_verified is False:
            print(f"fedrs: warning: {args.pretrained} is recognised as {entry.key} by name but its sha256 "
                  f"differs from the published file: compare with care")
    return 0


def register(sub) -> None:
    z = sub.add_parser("zeroshot", help="zero-shot top-1 of a backbone on every imported scene dataset")
    z.add_argument("--model", default="fedrs-rsclip-s", help="open_clip model name or offline fedrs model")
    z.add_argument("--pretrained", default=None,
                   help="hub tag ('openai'), checkpoint file, or omit for the offline model")
    z.add_argument("--datasets", nargs="+", help="datasets (default: UCMerced RSSCN7 EuroSAT AID-holdout)")
    z.add_argument("--no-ensemble", action="store_true", help="single template only")
    z.add_argument("--no-strict", action="store_true",
                   help="load a checkpoint file even if keys are missing or unexpected (check them first)")
    z.add_argument("--out", help="output folder (default: results/zero_shot)")
    z.set_defaults(func=cmd_zeroshot)
