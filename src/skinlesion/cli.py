"""Command line: parse arguments, resolve the config, call the stage's public function."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .cli_options import check_args, overrides_of, resume_base, written_run
from .commands import VERBS
from .config import load_config
from .errors import Interrupted, SkinlesionError, original_message, stop_on_signals

USER_ERRORS = (SkinlesionError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)  # printed as "error: ...", exit status 2


def build_parser() -> argparse.ArgumentParser:
    """The parser: the common options, then each verb module's own (skinlesion.commands, in VERBS order)."""
    parser = argparse.ArgumentParser(prog="skinlesion", description=(
        "Train, evaluate and serve dermoscopic skin-lesion classifiers (HAM10000). "
        "Research use only; not a medical device."))
    parser.add_argument("--version", action="version", version=f"skinlesion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERBS:
        verb = importlib.import_module(f"{__package__}.commands.{name}")
        p = sub.add_parser(verb.NAME, help=verb.HELP, description=verb.HELP)
        p.add_argument("--config", metavar="FILE.yaml", help="YAML config; CLI flags override it")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        verb.add_arguments(p)
        p.set_defaults(func=verb.main, lock=getattr(verb, "LOCK", None))
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI; the process's signal handlers are restored when it returns (main() may be called as a
    library, e.g. by tests or a notebook)."""
    import signal
    previous = stop_on_signals()
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import console
    console.set_quiet(getattr(args, "quiet", False))
    overrides = overrides_of(args)
    try:
        cfg = load_config(args.config, overrides, base=resume_base(args)).validate()
        check_args(args)
        if getattr(args, "model", None):  # hf-hub:ORG/NAME[@rev]: the bundle from the Hub cache, for every verb
            from .inference.hub_ref import resolve
            args.model = str(resolve(args.model))
        from .runlock import run_lock
        run_dir, create = written_run(args)
        with run_lock(run_dir, args.command, create=create):
            return args.func(args, cfg)
    except USER_ERRORS as exc:
        print("error: " + " ".join(original_message(exc).split()), file=sys.stderr)  # one line, whatever it holds
        return 2
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted (nothing half-written is kept; `--resume` continues a training run)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # disk full, permissions, a path that is a folder, ...: the user's environment
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}. Remedy: check that path, its permissions and the free disk "
              "space, then run the command again.", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory. Remedy: lower --batch-size or --image-size, or use fewer --num-workers.",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug, not a user error: one line, and the traceback on request
        if os.environ.get("SKINLESION_DEBUG"):
            raise
        text = original_message(exc)
        print(f"error: internal error ({type(exc).__name__}: {text.splitlines()[0] if text else ''}). "
              "Remedy: run again with SKINLESION_DEBUG=1 to see the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
