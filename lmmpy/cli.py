"""``lmmpy fit FORMULA --data NAME_OR_CSV [--ml] [--factor COL ...]``: fit and print the summary."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import pandas as pd

from . import datasets
from .errors import LmmError
from .lmer import lmer


def _load(data: str):
    if os.path.exists(data):
        return pd.read_csv(data), os.path.splitext(os.path.basename(data))[0]
    return datasets.load(data), data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lmmpy", description="Linear mixed models with lme4 formulas.")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model and print its summary")
    f.add_argument("formula", help="lme4 formula, e.g. 'Reaction ~ Days + (Days | Subject)'")
    f.add_argument("--data", required=True,
                   help=f"a bundled data set ({', '.join(datasets.names())}) or a CSV file")
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument("--factor", action="append", default=[], metavar="COL",
                   help="treat a numeric column as categorical (repeatable)")
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
    except LmmError as e:
        print(f"lmmpy: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
