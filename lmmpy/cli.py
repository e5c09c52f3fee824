"""``lmmpy fit FORMULA --data NAME_OR_CSV [--ml] [--factor COL ...]``: fit and print the summary.

Every failure is one line on stderr, ``lmmpy: error: ...``, and a non-zero exit: 2 for a
problem in what the user gave (an :class:`lmmpy.LmmError`), 1 for anything else (then the
exception's type is named too); ``--traceback`` shows Python's full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

import pandas as pd

from . import datasets
from .errors import DataError, LmmError
from .lmer import lmer


def _looks_like_path(data: str) -> bool:
    """A name with a path separator or a .csv suffix is meant as a file, not a bundled data set."""
    return os.sep in data or (os.altsep is not None and os.altsep in data) or data.lower().endswith(".csv")


def _load(data: str):
    if os.path.isdir(data):
        raise DataError(f"--data {data!r} is a directory, not a CSV file")
    if os.path.exists(data):
        try:
            df = pd.read_csv(data)
        except pd.errors.EmptyDataError:
            raise DataError(f"the CSV file {data!r} is empty (no header, no rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {data!r} as a CSV file: {e}") from None
        except OSError as e:
            raise DataError(f"cannot read {data!r}: {e.strerror or e}") from None
        return df, os.path.splitext(os.path.basename(data))[0]
    if _looks_like_path(data):
        raise DataError(f"the file {data!r} does not exist")
    return datasets.load(data), data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lmmpy", description="Linear mixed models with lme4 formulas.")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model and print its summary")
    f.add_argument("formula", help="lme4 formula, e.g. 'Reaction ~ Days + (Days | Subject)'")
    f.add_argument("--data", required=True, help=f"a bundled data set ({', '.join(datasets.names())}) or a CSV file")
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument(
        "--factor",
        action="append",
        default=[],
        metavar="COL",
        help="treat a numeric column as categorical (repeatable)",
    )
    f.add_argument(
        "--traceback", action="store_true", help="on an error, show Python's full traceback instead of one line"
    )
    sub.add_parser("datasets", help="list the bundled data sets")
    args = ap.parse_args(argv)
    if args.command == "datasets":
        print("\n".join(datasets.names()))
        return 0
    try:
        df, name = _load(args.data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = lmer(args.formula, df, REML=not args.ml, factors=args.factor, data_name=name)
        print(fit.summary(), end="")
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - the command line shows every failure as one line
        if args.traceback:
            traceback.print_exc()
        elif isinstance(e, LmmError):
            print(f"lmmpy: error: {e}", file=sys.stderr)
        else:
            detail = " ".join(str(e).split()) or "(no message)"
            print(f"lmmpy: error: {type(e).__name__}: {detail} (run with --traceback for details)", file=sys.stderr)
        return 2 if isinstance(e, LmmError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
