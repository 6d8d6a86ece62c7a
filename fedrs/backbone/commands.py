"""``fedrs backbone pretrain|list|card`` and ``fedrs zeroshot``."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_pretrain(args) -> int:
    from fedrs.backbone.pretrain import load_recipe, pretrain
    from fedrs.config import parse_overrides
    from fedrs.paths import models_root, results_root

    cfg = load_recipe(args.model, args.recipe, parse_overrides(args.set))
    out_dir = Path(args.out) if args.out else models_root() / cfg.model
    ckpt = out_dir / "open_clip_model.pt"
    if args.if_missing and ckpt.is_file():
        print(f"{cfg.model}: checkpoint present at {ckpt}; nothing to do (drop --if-missing to retrain)")
        return 0
    if ckpt.is_file() and not (args.restart or args.if_missing) and not (out_dir / "pretrain_state.pt").is_file():
        print(f"{cfg.model}: checkpoint present at {ckpt}; pass --restart to train again")
        return 0
    if args.restart:
        (out_dir / "pretrain_state.pt").unlink(missing_ok=True)
    card_dirs = [] if args.no_card else [results_root() / "backbones" / cfg.model]
    card = pretrain(cfg, out_dir=out_dir, resume=not args.restart, card_dirs=card_dirs)
    print(f"{cfg.model}: trained in {card['train_wall_seconds'] / 60:.1f} min -> {ckpt}")
    for row in card["zero_shot"]:
        if "error" not in row:
            print(f"  zero-shot {row['dataset']:<12} top-1 {row['top1']:5.1f}%  "
                  f"(ensemble {row.get('top1_ensemble', float('nan')):5.1f}%, chance {row['chance']:.1f}%)")
    return 0


def cmd_list(args) -> int:
    from fedrs.backbone.factory import OFFLINE_MODELS, list_backbones, offline_checkpoint_path

    table = list_backbones()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for name in OFFLINE_MODELS:
        ckpt = offline_checkpoint_path(name)
        print(f"{name:<22} offline fedrs model   {'built: ' + str(ckpt) if ckpt.is_file() else 'not built (fedrs backbone pretrain --model ' + name + ')'}")
    if args.all:
        for name, tags in table.items():
            if name not in OFFLINE_MODELS:
                print(f"{name:<22} open_clip             tags: {', '.join(tags) or '-'}")
    else:
        print("(pass --all to list every open_clip architecture and its pretrained tags)")
    return 0


def cmd_card(args) -> int:
    from fedrs.paths import models_root

    card = models_root() / args.model / "model_card.md"
    if not card.is_file():
        from fedrs.errors import BackboneError

        raise BackboneError(f"no model card at {card}: build the backbone with `fedrs backbone pretrain --model {args.model}`")
    print(card.read_text())
    return 0


def cmd_zeroshot(args) -> int:
    from fedrs.evaluate.zeroshot import EVAL_DATASETS, RS_TEMPLATES, SINGLE_TEMPLATE, evaluate_zero_shot, write_zero_shot_table
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
    bb = sub.add_parser("backbone", help="build, list and describe CLIP backbones")
    bsub = bb.add_subparsers(dest="backbone_command", metavar="ACTION")
    bsub.required = True

    p = bsub.add_parser("pretrain", help="pretrain an offline fedrs CLIP on RSICD captions (resumable)")
    p.add_argument("--model", default="fedrs-rsclip-s", help="offline model (fedrs-rsclip-s or fedrs-rsclip-tiny)")
    p.add_argument("--recipe", help="YAML recipe (default: the shipped recipe for --model)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. --set epochs=8")
    p.add_argument("--out", help="output folder (default: $FEDRS_MODELS/<model>)")
    p.add_argument("--restart", action="store_true", help="ignore a saved resume point and train from scratch")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the checkpoint already exists")
    p.add_argument("--no-card", action="store_true", help="do not copy the model card to results/backbones/")
    p.set_defaults(func=cmd_pretrain)

    p = bsub.add_parser("list", help="offline models and open_clip architectures")
    p.add_argument("--all", action="store_true", help="also list every open_clip architecture")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = bsub.add_parser("card", help="print the model card of a built offline backbone")
    p.add_argument("--model", default="fedrs-rsclip-s")
    p.set_defaults(func=cmd_card)

    z = sub.add_parser("zeroshot", help="zero-shot top-1 of a backbone on every imported scene dataset")
    z.add_argument("--model", default="fedrs-rsclip-s", help="open_clip model name or offline fedrs model")
    z.add_argument("--pretrained", default=None, help="hub tag ('openai'), checkpoint file, or omit for the offline model")
    z.add_argument("--datasets", nargs="+", help="datasets (default: UCMerced RSSCN7 EuroSAT AID-holdout)")
    z.add_argument("--no-ensemble", action="store_true", help="single template only")
    z.add_argument("--out", help="output folder (default: results/zero_shot)")
    z.set_defaults(func=cmd_zeroshot)
