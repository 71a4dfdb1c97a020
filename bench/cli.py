"""The ``eraselab`` command line: ``eraselab --help`` lists the commands.

Each command lives in ``bench/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``; command modules import heavy libraries (torch, diffusers) inside ``run``
so that ``eraselab ls`` and ``eraselab validate`` answer in well under a second.
User errors print one line (``eraselab: error: ...``) and exit 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.core.errors import EraselabError

# Order is the order of `eraselab --help`.
COMMANDS = ["run", "erase", "attack", "tune", "score", "report", "compare", "ls", "validate", "miniworld"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), as the CLI contract asks."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eraselab",
                     description="Benchmark harness for concept erasure in text-to-image diffusion models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.commands.{name}":
                continue  # a command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EraselabError as exc:
        sys.stderr.write(f"eraselab: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("eraselab: interrupted; finished work is kept and a rerun resumes\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
