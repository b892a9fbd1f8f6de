"""`python -m data_gen SUBCOMMAND ...`: synth | batch | offline | filter | estimate.

Each subcommand lives in its own module with its own `main(argv)`; this only dispatches, and
imports the chosen module alone (the offline teacher needs no openai, filter no network).
"""

from __future__ import annotations

import importlib
import sys

from tinygsm_jax.cli import UserError, run_main

COMMANDS = {
    "synth": ("data_gen.synth", "ask an OpenAI-compatible teacher, asynchronously (resumable)"),
    "batch": (
        "data_gen.batch",
        "the same through the OpenAI Batch API: prepare|submit|status|collect",
    ),
    "offline": ("data_gen.offline", "the embedded procedural teacher (no API)"),
    "filter": ("data_gen.filter", "execute, dedup and decontaminate problems"),
    "estimate": ("data_gen.estimate", "projected requests, tokens and cost of a teacher run"),
}


def _usage() -> str:
    lines = ["usage: python -m data_gen {" + ",".join(COMMANDS) + "} ...", "", "subcommands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand's `main` with the remaining arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        raise UserError(f"unknown subcommand {cmd!r}; one of: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[cmd][0])
    return int(module.main(rest) or 0)


def cli() -> None:
    """Console-script entry point: `main` with user errors as one line and exit status 2."""
    run_main(main)


if __name__ == "__main__":
    cli()
