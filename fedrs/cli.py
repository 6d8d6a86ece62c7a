"""The ``fedrs`` command.

Each command group lives next to the code it drives and contributes its sub-parser through a
``register(subparsers)`` function; this file only assembles them, so adding a command never
means editing another component's module.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it provides) -- each module defines register(subparsers).
COMMAND_MODULES = [
    "fedrs.data.commands",       # fedrs data import|list|download
    "fedrs.backbone.commands",   # fedrs backbone pretrain|list|card ; fedrs zeroshot
    "fedrs.federated.commands",  # fedrs run ; fedrs describe
    "fedrs.federated.flower.commands",  # fedrs flower local|submit
    "fedrs.study.commands",      # fedrs sweep ; fedrs report
]


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedrs",
        description="Federated vision-language learning on remote sensing imagery "
        "(FedRSCLIP, PE-RSITR, Fed-RSIC).",
    )
    parser.add_argument("--version", action="version", version=f"fedrs {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from fedrs import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("fedrs: interrupted (partial work was kept; re-run to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user-facing errors become one readable line
        from fedrs.errors import FedrsError

        if isinstance(exc, (FedrsError, UserError)):
            print(f"fedrs: error: {exc}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
