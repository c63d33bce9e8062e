"""The `devsync` command line, a view over the operations (`devsync.ops`).

`devsync --check` is routed here before anything else of devsync is imported: it runs at every
shell prompt (see `devsync.prompt`). Every other command lives in `devsync.cli.commands`.
"""

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        from devsync.prompt.check import main as check_main

        check_main(args)  # never returns
    from devsync.cli.commands import run

    return run(args, own_process=argv is None)
