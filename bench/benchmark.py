#!/usr/bin/env python3
"""Fit times of lmmpy against lme4, the Rust-backed ``mixedlm`` package and statsmodels MixedLM
(where it can express the model).

    python bench/benchmark.py [--quick] [--reps N] [--no-lme4] [--no-statsmodels] [--no-mixedlm]
                              [--only NAME] [--write]

Each lmmpy fit runs in a child process, so its peak memory (max RSS of the child, data
included) is its own; the time is the median of --reps fits of the formula from the data
frame (formula parsing included).  lme4 is timed by Rscript on the same data written to CSV
(median of as many fits), statsmodels likewise, each with a time limit; ``mixedlm`` in its own
venv (--mixedlm-python, default /work/venv-mixedlm/bin/python or $LMMPY_MIXEDLM_PYTHON; the
column is empty where there is none) on the same CSV.  The MovieLens-1M-shaped model
(bench/movielens_like.py, 1,000,209 rows) is one of the cases; lme4 takes some 10 minutes on
it, so --lme4-max-rows skips it by default.  --write puts the table into bench/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from movielens_like import FORMULA as MOVIELENS_FORMULA  # bench/ is the scripts' folder
from movielens_like import movielens_like
from readme_section import write_section

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def simulate_crossed(n, la, lb, slope=False, seed=1):
    """y = 1 + 0.5 x + a_i + b_j (+ s_j x) + e with crossed factors a (la levels), b (lb)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, la, n)
    b = rng.integers(0, lb, n)
    x = rng.normal(size=n)
    y = (
        1
        + 0.5 * x
        + rng.normal(0, 0.5, la)[a]
        + rng.normal(0, 0.3, lb)[b]
        + (rng.normal(0, 0.2, lb)[b] * x if slope else 0)
        + rng.normal(size=n)
    )
    return pd.DataFrame({"y": y, "x": x, "a": pd.Categorical(a), "b": pd.Categorical(b)})


def cases(quick):
    """(name, data spec, formula, REML, statsmodels spec or None)."""
    out = [
        (
            "sleepstudy",
            ("bundled", "sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            True,
            dict(groups="Subject", re_formula="~Days"),
        ),
        ("Penicillin (crossed)", ("bundled", "Penicillin"), "diameter ~ 1 + (1 | plate) + (1 | sample)", True, None),
        ("Pastes (nested)", ("bundled", "Pastes"), "strength ~ 1 + (1 | batch/cask)", True, None),
        (
            "S&B random slope (ML)",
            ("bundled", "mlbook2"),
            "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)",
            False,
            dict(groups="schoolnr", re_formula="~IQ_verb"),
        ),
        ("InstEval", ("bundled", "InstEval"), "y ~ service + (1 | s) + (1 | d) + (1 | dept)", True, None),
        ("InstEval, slope on s", ("bundled", "InstEval"), "y ~ service + (service | s) + (1 | d)", True, None),
        ("crossed 50k, 2000 x 500", ("crossed", 50_000, 2000, 500, False), "y ~ x + (1 | a) + (1 | b)", True, None),
        ("MovieLens-1M-shaped, 6,040 x 3,706", ("movielens",), MOVIELENS_FORMULA, True, None),
    ]
    sizes = [(125_000, 12_500), (250_000, 25_000), (500_000, 50_000), (1_000_000, 100_000)]
    if quick:
        sizes = sizes[:2]
    for n, la in sizes:
        out.append(
            (
                f"scaling: {n:,} rows, {la:,} x 1,000 + slope",
                ("crossed", n, la, 1000, True),
                "y ~ x + (1 | a) + (x | b)",
                True,
                None,
            )
        )
    for lb in [250, 500, 1000, 2000] if not quick else [250, 500]:
        out.append(
            (
                f"levels: 250,000 rows, 25,000 x {lb:,} + slope",
                ("crossed", 250_000, 25_000, lb, True),
                "y ~ x + (1 | a) + (x | b)",
                True,
                None,
            )
        )
    return out


def load(spec):
    import lmmpy

    if spec[0] == "bundled":
        return lmmpy.datasets.load(spec[1])
    if spec[0] == "movielens":
        return movielens_like()
    return simulate_crossed(*spec[1:])


def _child(spec, formula, reml, reps, queue):
    import warnings

    import lmmpy

    d = load(spec)
    times, fit = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = lmmpy.lmer(formula, d, REML=reml)
        times.append(time.perf_counter() - t0)
    queue.put(
        dict(
            seconds=float(np.median(times)),
            evals=fit.optsum.n_evals,
            criterion=fit.objective,
            optimizer=fit.optsum.optimizer,
            peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
    )


def time_lmmpy(spec, formula, reml, reps):
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_child, args=(spec, formula, reml, reps, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); for (f in strsplit(args[4], ",")[[1]]) d[[f]] <- factor(d[[f]])
reps <- as.integer(args[3]); REML <- as.logical(args[5])
t <- numeric(reps)
for (i in seq_len(reps)) t[i] <- system.time(m <- lmer(as.formula(args[2]), data = d, REML = REML))[["elapsed"]]
cat(sprintf("%.6f %.10f\n", median(t), if (REML) REMLcrit(m) else deviance(m)))
"""

FACTORS = {
    "sleepstudy": "Subject",
    "Penicillin": "plate,sample",
    "Pastes": "batch,cask",
    "mlbook2": "schoolnr",
    "InstEval": "s,d,dept,service",
}


def factors_of(spec) -> str:
    """The grouping factors of a case's data (made factors again after the CSV)."""
    if spec[0] == "movielens":
        return "u,m"
    return FACTORS.get(spec[1], "a,b") if spec[0] == "bundled" else "a,b"


MIXEDLM_SCRIPT = r"""
import sys, time
import numpy as np, pandas as pd, mixedlm
csv, formula, reps, factors, reml = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "TRUE"
d = pd.read_csv(csv)
for f in factors.split(","):
    if f in d:
        d[f] = d[f].astype(str)
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    m = mixedlm.lmer(formula, d, REML=reml)
    times.append(time.perf_counter() - t0)
print(f"{np.median(times):.6f} {float(m.REMLcrit() if reml else m.deviance()):.10f}")
"""


def mixedlm_python(given=None):
    """The Python of a venv with ``mixedlm`` (None: there is none)."""
    path = given or os.environ.get("LMMPY_MIXEDLM_PYTHON") or "/work/venv-mixedlm/bin/python"
    return path if os.path.exists(path) else None


def time_mixedlm(spec, formula, reml, reps, limit, python):
    """``mixedlm``'s median fit time (data read before the clock starts) and criterion."""
    if python is None:
        return None
    d = load(spec)
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = os.path.join(tmp, "d.csv"), os.path.join(tmp, "t.py")
        d.to_csv(csv, index=False)
        with open(script, "w") as fh:
            fh.write(MIXEDLM_SCRIPT)
        try:
            r = subprocess.run(
                [python, script, csv, formula, str(reps), factors_of(spec), str(reml).upper()],
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return {"seconds": float("inf")}
    if r.returncode != 0 or not r.stdout.split():
        return None
    secs, crit = r.stdout.split()[:2]
    return {"seconds": float(secs), "criterion": float(crit)}


def time_lme4(spec, formula, reml, reps, limit):
    if not shutil.which("Rscript"):
        return None
    d = load(spec)
    factors = factors_of(spec)
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = os.path.join(tmp, "d.csv"), os.path.join(tmp, "t.R")
        d.to_csv(csv, index=False)
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        try:
            r = subprocess.run(
                ["Rscript", script, csv, formula, str(reps), factors, str(reml).upper()],
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return {"seconds": float("inf")}
    if r.returncode != 0:
        return None
    secs, crit = r.stdout.split()[:2]
    return {"seconds": float(secs), "criterion": float(crit)}


def _sm_child(spec, formula, reml, sm, queue):
    import warnings

    import statsmodels.formula.api as smf

    d = load(spec)
    fixed = formula.split("+ (")[0].strip()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smf.mixedlm(fixed, d, groups=d[sm["groups"]], re_formula=sm["re_formula"]).fit(reml=reml)
    queue.put(time.perf_counter() - t0)


def time_statsmodels(spec, formula, reml, sm, limit):
    if sm is None:
        return None
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_sm_child, args=(spec, formula, reml, sm, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        return float("inf")
    return queue.get() if not queue.empty() else None


def fmt(x, digits=3):
    if x is None:
        return "-"
    if x == float("inf"):
        return "timeout"
    return f"{x:.{digits}g}" if x < 100 else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small scaling series only")
    ap.add_argument("--reps", type=int, default=5, help="fits per small model (1 for large ones)")
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--no-mixedlm", action="store_true")
    ap.add_argument("--mixedlm-python", help="the Python of a venv with mixedlm (default: see the docstring)")
    ap.add_argument("--lme4-max-rows", type=int, default=250_000, help="skip lme4 above this many rows")
    ap.add_argument("--limit", type=float, default=600, help="seconds allowed to lme4 / statsmodels per model")
    ap.add_argument("--write", action="store_true", help="write the table into bench/README.md")
    ap.add_argument("--only", default="", help="run only the models whose name contains this text")
    a = ap.parse_args()

    rows = []
    header = (
        "| model | rows | lmmpy s | evals | peak MB | lme4 s | lmmpy / lme4 | mixedlm s | lmmpy / mixedlm "
        "| statsmodels s | crit. lmmpy - lme4 | crit. lmmpy - mixedlm |"
    )
    print(header)
    print("|" + "---|" * 12)
    mpy = None if a.no_mixedlm else mixedlm_python(a.mixedlm_python)
    for name, spec, formula, reml, sm in cases(a.quick):
        if a.only not in name:
            continue
        n = len(load(spec))
        reps = a.reps if n < 100_000 else 1
        ours = time_lmmpy(spec, formula, reml, reps)
        lme4 = None if (a.no_lme4 or n > a.lme4_max_rows) else time_lme4(spec, formula, reml, min(reps, 3), a.limit)
        mx = time_mixedlm(spec, formula, reml, reps, a.limit, mpy)
        smt = None if a.no_statsmodels else time_statsmodels(spec, formula, reml, sm, a.limit)
        ratio = ours["seconds"] / lme4["seconds"] if lme4 and np.isfinite(lme4["seconds"]) else None
        mratio = ours["seconds"] / mx["seconds"] if mx and np.isfinite(mx["seconds"]) else None
        dcrit = ours["criterion"] - lme4["criterion"] if lme4 and "criterion" in lme4 else None
        mcrit = ours["criterion"] - mx["criterion"] if mx and "criterion" in mx else None
        line = (
            f"| {name} | {n:,} | {fmt(ours['seconds'])} | {ours['evals']} | {ours['peak_mb']:.0f} | "
            f"{fmt(lme4['seconds'] if lme4 else None)} | {fmt(ratio, 2)} | "
            f"{fmt(mx['seconds'] if mx else None)} | {fmt(mratio, 2)} | {fmt(smt)} | "
            f"{'-' if dcrit is None else f'{dcrit:+.1e}'} | {'-' if mcrit is None else f'{mcrit:+.1e}'} |"
        )
        print(line, flush=True)
        rows.append(line)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )
    if a.write:
        write_readme([header, "|" + "---|" * 12, *rows], machine)


def write_readme(lines, machine):
    write_section(
        "table",
        f"Machine: {machine}; {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(lines),
    )


if __name__ == "__main__":
    main()
