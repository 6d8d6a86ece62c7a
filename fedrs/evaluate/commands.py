"""``fedrs zeroshot``: zero-shot top-1 of a backbone on every imported scene dataset."""

from __future__ import annotations

from pathlib import Path


def cmd_zeroshot(args) -> int:
    from fedrs.backbone.templates import RS_TEMPLATES, SINGLE_TEMPLATE
    from fedrs.evaluate.zeroshot import EVAL_DATASETS, evaluate_zero_shot, write_zero_shot_table
    from fedrs.paths import results_root

    rows = evaluate_zero_shot(
        args.model, args.pretrained, datasets=args.datasets or list(EVAL_DATASETS),
        templates=SINGLE_TEMPLATE, ensemble=None if args.no_ensemble else RS_TEMPLATES,
    )
    out = Path(args.out) if args.out else results_root() / "zero_shot"
    csv, md = write_zero_shot_table(rows, out)
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    return 0


def register(sub) -> None:
    z = sub.add_parser("zeroshot", help="zero-shot top-1 of a backbone on every imported scene dataset")
    z.add_argument("--model", default="fedrs-rsclip-s", help="open_clip model name or offline fedrs model")
    z.add_argument("--pretrained", default=None, help="hub tag ('openai'), checkpoint file, or omit for the offline model")
    z.add_argument("--datasets", nargs="+", help="datasets (default: UCMerced RSSCN7 EuroSAT AID-holdout)")
    z.add_argument("--no-ensemble", action="store_true", help="single template only")
    z.add_argument("--out", help="output folder (default: results/zero_shot)")
    z.set_defaults(func=cmd_zeroshot)
