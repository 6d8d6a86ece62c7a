"""The ``fedrs`` command.

Each command group lives next to the code it drives and contributes its sub-parser through a
``register(subparsers)`` function; this file only assembles them, so adding a command never
means editing another component's module.

Errors end as one line on stderr, never a traceback: ``fedrs: error: <what> (<path>): <fix>``
with exit status 2 for a :class:`~fedrs.errors.FedrsError` (the input is wrong) and 1 for an
``OSError`` (the machine said no: a full disk, a read-only folder, a path through a file), which
names the path the system call reported, or the file an atomic write was replacing.

The library reports through ``logging``, never ``print``. A command shows the INFO records of the
loggers it names with ``set_defaults(console_loggers=("fedrs.data",))`` as plain lines on stdout
(warnings prefixed ``fedrs:``), which is what those commands printed before the library logged.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

# (module, what it provides) -- each module defines register(subparsers).
COMMAND_MODULES = [
    "fedrs.data.commands",       # fedrs data import|list|download
    "fedrs.backbone.commands",   # fedrs backbone pretrain|list|card
    "fedrs.evaluate.commands",   # fedrs zeroshot
    "fedrs.federated.commands",  # fedrs run ; fedrs describe
    "fedrs.federated.flower.commands",  # fedrs flower local|submit
    "fedrs.study.commands",      # fedrs sweep ; fedrs report
    "fedrs.retrieval.commands",  # fedrs retrieval select-lr
]


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors read like every other fedrs error: one line,
    ``fedrs: error: <what>: see 'fedrs <command> --help'``, exit status 2 (argparse's own
    format is the usage text then ``fedrs run: error: ...``). Sub-parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"fedrs: error: {message}: see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


class _ConsoleHandler(logging.Handler):
    """One line per record on the current ``sys.stdout`` (looked up at each record, so pytest's
    capture and notebook redirection see it); warnings and errors start with ``fedrs:``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if record.levelno >= logging.WARNING:
                line = f"fedrs: {line}"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left (`| head`): main() ends the command quietly
            raise
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


@contextmanager
def _console_logging(names: Sequence[str]) -> Iterator[None]:
    """Show INFO and above of the loggers ``names`` on stdout while a command runs (and only
    there: they do not also propagate to handlers a caller may have set on the root logger)."""
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


#: exit status after the reader of stdout went away (128 + SIGPIPE, as a shell reports it)
EXIT_BROKEN_PIPE = 141


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (Linux/BSD report POLLERR on its write
    end), as opposed to a broken pipe or socket elsewhere, which is a real error."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or stdout is no real file
        return False


def _stdout_gone() -> int:
    """``fedrs data list | head``: the reader closed the pipe. Stop quietly, as Unix tools do
    (no traceback, no error line: the user saw what they asked for); later writes, including
    the interpreter's final flush, go to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


#: what to do about an OSError, by errno
_OS_FIXES = {
    errno.ENOSPC: "free space on that disk, or write elsewhere (--out, FEDRS_RESULTS, FEDRS_CACHE, FEDRS_DATA)",
    errno.EDQUOT: "your disk quota is used up: free space, or write elsewhere",
    errno.EACCES: "that location is not writable for you: fix its permissions or choose another location",
    errno.EPERM: "that location is not writable: fix its permissions or choose another location",
    errno.EROFS: "that file system is read-only: choose a location on a writable disk",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EISDIR: "that path is a folder: give a file path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "that path exists already: remove it or choose another",
    errno.ENAMETOOLONG: "choose a shorter path",
}
#: the temporary name of an atomic write (fedrs.io): ``.<name>.<8 hex>.tmp``
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


def os_error_line(exc: OSError) -> str:
    """``<what> (<path>): <fix>`` for an OSError (the part after ``fedrs: error: ``); a temporary
    file of an atomic write is named as the file it was going to replace."""
    what = exc.strerror or str(exc) or type(exc).__name__
    what = what[:1].lower() + what[1:]
    path = exc.filename
    if path is not None:
        path = os.fsdecode(path)
        match = _TEMP_NAME.match(os.path.basename(path))
        if match:
            path = os.path.join(os.path.dirname(path), match["name"])
    fix = _OS_FIXES.get(exc.errno, "check the path and the disk, then try again")
    return f"{what} ({path}): {fix}" if path else f"{what}: {fix}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _console_logging(getattr(args, "console_loggers", ())):
            result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return _stdout_gone()
    except KeyboardInterrupt:
        print("fedrs: interrupted (partial work was kept; re-run to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user-facing errors become one readable line
        from fedrs.errors import FedrsError

        if isinstance(exc, (FedrsError, UserError)):
            print(f"fedrs: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(f"fedrs: error: {os_error_line(exc)}", file=sys.stderr)
            return 1
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
