"""One process of a multi-process CLI test: runs tinygsm_jax CLIs in turn, logging each file written.

    python tests/multihost_support.py WRITES_LOG MODULE ARG... [--then MODULE ARG...]

Every completed atomic write (`os.replace`, which `cli.atomic_path` ends with) appends its
destination to WRITES_LOG, so a test can check that each output file is written once, and by
one process. The CLIs run in one interpreter (`initialize_distributed` joins the run once).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

_replace = os.replace


def _logged_replace(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(json.dumps(os.fspath(dst)) + "\n")


def main() -> int:
    os.replace = _logged_replace
    commands, current = [], []
    for a in sys.argv[2:]:
        if a == "--then":
            commands.append(current)
            current = []
        else:
            current.append(a)
    commands.append(current)
    for module, *argv in commands:
        rc = importlib.import_module(f"tinygsm_jax.{module}").main(argv)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
