"""``fedrs backbone pretrain|select-recipe|list|card`` (``fedrs zeroshot`` is in ``fedrs.evaluate.commands``)."""

from __future__ import annotations

import json


def cmd_pretrain(args) -> int:
    from fedrs.config import parse_overrides
    from fedrs.pretrain import build_offline_backbone

    build_offline_backbone(args.model, recipe=args.recipe, overrides=parse_overrides(args.set),
                           out_dir=args.out, if_missing=args.if_missing, restart=args.restart,
                           card=not args.no_card)
    return 0


def cmd_select_recipe(args) -> int:
    from pathlib import Path

    from fedrs.paths import cache_root, results_root
    from fedrs.pretrain.selection import candidate_names, select_recipe

    names = args.candidates or candidate_names()
    workdir = Path(args.workdir) if args.workdir else cache_root() / "recipe-selection"
    out = Path(args.out) if args.out else results_root() / "backbones" / "fedrs-rsclip-s"
    record = select_recipe(names, workdir, out_dir=out, train=not args.no_train, threads=args.threads)
    for row in record["candidates"]:
        print(f"{row['candidate']:<14} val mR {row['val_mR']:6.2f}  zero-shot (unseen templates) "
              f"{row['val_zeroshot_unseen_templates']:5.1f}  score {row['selection_score']:6.2f}")
    print(f"chosen: {record['chosen']} "
          + ("(the shipped recipe: the shipped backbone stands)" if record["shipped_recipe_matches"]
             else "(differs from the shipped recipe: make it fedrs/pretrain/recipes/fedrs-rsclip-s.yaml "
                  "without validation_fraction and rebuild with `fedrs backbone pretrain --restart`)"))
    print(f"wrote {out / 'selection.json'} and {out / 'SELECTION.md'}")
    return 0


def cmd_list(args) -> int:
    from fedrs.backbone.checkpoints import format_registry, registry_rows
    from fedrs.backbone.factory import OFFLINE_MODELS, list_backbones, offline_checkpoint_path

    table = list_backbones()
    if args.json:
        print(json.dumps({"open_clip": table, "checkpoints": registry_rows()} if args.all else table, indent=2))
        return 0
    for name in OFFLINE_MODELS:
        ckpt = offline_checkpoint_path(name)
        state = ('built: ' + str(ckpt) if ckpt.is_file()
                 else 'not built (fedrs backbone pretrain --model ' + name + ')')
        print(f"{name:<22} offline fedrs model   {state}")
    if args.all:
        for name, tags in table.items():
            if name not in OFFLINE_MODELS:
                print(f"{name:<22} open_clip             tags: {', '.join(tags) or '-'}")
        print()
        print(format_registry(detail=args.detail))
    else:
        print("(pass --all to list every open_clip architecture, its pretrained tags and the registry of "
              "known remote-sensing checkpoints)")
    return 0


def cmd_card(args) -> int:
    from fedrs.paths import models_root, results_root

    if args.rescore:
        from fedrs.pretrain.selection import rescore_model_card

        rescore_model_card(args.model, card_dirs=[results_root() / "backbones" / args.model])
    card = models_root() / args.model / "model_card.md"
    if not card.is_file():
        from fedrs.errors import BackboneError

        raise BackboneError(f"no model card at {card}: build the backbone with "
                            f"`fedrs backbone pretrain --model {args.model}`")
    print(card.read_text())
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
    p.set_defaults(func=cmd_pretrain, console_loggers=("fedrs.pretrain",))

    p = bsub.add_parser("select-recipe", help="choose the offline backbone's recipe on held-out pretraining "
                                              "images (trains each candidate; resumable)")
    p.add_argument("candidates", nargs="*", help="candidate recipe names (default: every file in "
                                                 "fedrs/pretrain/recipes/candidates/)")
    p.add_argument("--workdir", help="where candidates are trained (default: $FEDRS_CACHE/recipe-selection)")
    p.add_argument("--out", help="where selection.json/SELECTION.md go (default: results/backbones/fedrs-rsclip-s)")
    p.add_argument("--no-train", action="store_true", help="score already trained candidates only")
    p.add_argument("--threads", type=int, help="CPU threads per candidate's training")
    p.set_defaults(func=cmd_select_recipe, console_loggers=("fedrs.pretrain",))

    p = bsub.add_parser("list", help="offline models and open_clip architectures")
    p.add_argument("--all", action="store_true",
                   help="also list every open_clip architecture and the known remote-sensing checkpoints")
    p.add_argument("--detail", action="store_true", help="with --all: each checkpoint's recipe and sources")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = bsub.add_parser("card", help="print the model card of a built offline backbone")
    p.add_argument("--model", default="fedrs-rsclip-s")
    p.add_argument("--rescore", action="store_true",
                   help="recompute the card's zero-shot rows and recipe-selection section (no retraining); "
                        "also rewrites results/backbones/<model>/")
    p.set_defaults(func=cmd_card)
