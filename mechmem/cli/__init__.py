"""The `mechmem` command line: parses arguments into configs and calls library functions.

Each command lives in its own module exposing `register(subparsers)`; a command's handler
returns an exit code. Bad input anywhere ends in one line on stderr and exit code 2.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .._threads import use_threads
from . import analyze, info, memorization, report, sweep, train

COMMANDS = (info, train, sweep, analyze, report, memorization)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mechmem",
        description="Train and dissect small networks on corrupted modular arithmetic.",
    )
    parser.add_argument("--version", action="version", version=f"mechmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        # The one place a command sets torch's thread count (mechmem/_threads.py says why).
        use_threads(getattr(args, "threads", None))
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # The reader went away (`mechmem analyze --json | head`): not an error of ours.
        # Point stdout at /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("mechmem: interrupted\n")
        return 130
    except (ValueError, TypeError, OSError, KeyError, MemoryError, ImportError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError) and msg.startswith(("'", '"')):
            msg = msg[1:-1]
        sys.stderr.write(f"mechmem {args.command}: error: {msg}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
