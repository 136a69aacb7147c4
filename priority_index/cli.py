"""Command line: ``priority-index run|validate PIPELINE.toml``.

Exit codes: 0 success, 2 bad input or configuration (the message names file, row, column),
1 internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import __version__
from .config import load_settings
from .errors import ConfigError, InputError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="priority-index", description="Priority Localities Index for community safety"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a pipeline and write its outputs")
    r.add_argument("pipeline", type=Path, help="pipeline TOML file, e.g. pipelines/croydon.toml")
    r.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/<pipeline name>/)"
    )
    r.add_argument("--seed", type=int, default=None, help="override pipeline.seed")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    v = sub.add_parser("validate", help="check the pipeline and its inputs without running")
    v.add_argument("pipeline", type=Path)
    v.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``priority-index`` console script."""
    args = _parser().parse_args(argv)
    from . import pipeline

    progress = None if args.quiet else pipeline.stderr_progress
    try:
        settings = load_settings(args.pipeline)
        if args.command == "validate":
            inputs = pipeline.ingest(settings, progress or (lambda _m: None))
            if not args.quiet:
                for t in inputs.quarantine.tallies.values():
                    d = t.as_dict()
                    print(
                        f"{d['source']}: {d['rows_read']:,} rows read, {d['rows_used']:,} used,"
                        f" {d['rows_rejected']:,} rejected {d['rejected_by_reason']}"
                    )
                print(
                    f"OK: {settings.source_file} is valid; {len(inputs.study)} LSOAs in the "
                    "study area"
                )
            return 0
        result = pipeline.run(settings, out_dir=args.out, seed=args.seed, progress=progress)
        if not args.quiet:
            print(f"Outputs written to {result.out_dir}")
        return 0
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        print("internal error: please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
