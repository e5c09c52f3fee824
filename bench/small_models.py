#!/usr/bin/env python3
"""Small models in a few milliseconds (issue 14): lmmpy against the Rust-backed ``mixedlm`` and
lme4, side by side, and the parametric bootstrap against lme4's ``bootMer``.

    python bench/small_models.py [--reps N] [--fits N] [--nsim N] [--boot-reps N]
                                 [--mixedlm-python PATH] [--project DIR] [--write]

Fits: for each model, --reps alternating rounds of (lmmpy, mixedlm, lme4); in each round each
package fits the model --fits times in its own process (lmmpy in this one; mixedlm in a child
Python, by default /work/venv-mixedlm/bin/python or $MIXEDLM_PYTHON; lme4 through Rscript),
formula processing included, timed inside that process after a warm-up, so no start-up is
counted; the table gives the median of the rounds' medians, and the ratios of those medians
(with the range of the per-round ratios).  A package that is missing gets a '-'.
lmmpy's fit is also split into its stages (formula and design, cross-products set-up,
optimizer with the convergence checks, results), medians over the same fits.

Bootstrap: ``fit.confint("boot", nsim=...)`` against lme4's ``confint(m, method = "boot",
nsim = ...)`` (bootMer with percentile intervals), --boot-reps alternating rounds.

The machine may be shared: the runs alternate so that both see the same load; the load
average is printed.  --project imports lmmpy from another checkout (a before/after
comparison).  --write puts the tables into bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = [  # name, bundled data set, its factors, formula
    ("sleepstudy", "sleepstudy", "Subject", "Reaction ~ Days + (Days | Subject)"),
    ("Penicillin", "Penicillin", "plate,sample", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes", "Pastes", "batch,cask", "strength ~ 1 + (1 | batch/cask)"),
]

MIXEDLM_SCRIPT = r"""
import sys, time, statistics, warnings
warnings.simplefilter("ignore")
import pandas as pd, mixedlm
csv, formula, factors, nfits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = pd.read_csv(csv)
for f in factors.split(","):
    d[f] = d[f].astype(str)
for _ in range(3):
    m = mixedlm.lmer(formula, d, REML=True)
ts = []
for _ in range(nfits):
    t0 = time.perf_counter(); m = mixedlm.lmer(formula, d, REML=True); ts.append(time.perf_counter() - t0)
print(statistics.median(ts))
"""

R_FIT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
n <- as.integer(args[4]); fo <- as.formula(args[2])
for (i in 1:3) m <- lmer(fo, data = d, REML = TRUE)
ts <- sapply(1:n, function(i) system.time(lmer(fo, data = d, REML = TRUE))[["elapsed"]])
cat(sprintf("%.6f\n", median(ts)))
"""

R_BOOT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
m <- lmer(as.formula(args[2]), data = d, REML = TRUE)
t <- system.time(suppressWarnings(suppressMessages(
  ci <- confint(m, method = "boot", nsim = as.integer(args[4]), seed = 1))))[["elapsed"]]
cat(sprintf("%.6f\n", t))
"""


def lmmpy_fits(lmmpy, data, formula, nfits):
    """Median seconds of nfits lmer fits, and of each stage (the lme4 chain's steps)."""
    from lmmpy.formula.design import build_design
    from lmmpy.lmer import mk_lmer_devfun, mk_lmer_fit, optimize_lmer

    for _ in range(3):
        lmmpy.lmer(formula, data)
    total, stages = [], {"formula and design": [], "set-up": [], "optimizer and checks": [], "results": []}
    for _ in range(nfits):
        t0 = time.perf_counter()
        lmmpy.lmer(formula, data)
        total.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        design = build_design(formula, data, env={})
        t1 = time.perf_counter()
        model = mk_lmer_devfun(design)
        t2 = time.perf_counter()
        opt = optimize_lmer(model)
        t3 = time.perf_counter()
        mk_lmer_fit(model, opt)
        t4 = time.perf_counter()
        for key, a, b in zip(stages, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            stages[key].append(b - a)
    return statistics.median(total), {k: statistics.median(v) for k, v in stages.items()}


def child_seconds(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return float(r.stdout.strip().split("\n")[-1])


def fmt_ms(s):
    return "-" if s is None else f"{1e3 * s:.2f}"


def ratio_text(ours, theirs):
    if not theirs or any(t is None for t in theirs):
        return "-"
    r = np.array(ours) / np.array(theirs)
    return f"{np.median(ours) / np.median(theirs):.2f} ({r.min():.2f}-{r.max():.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="alternating rounds per model")
    ap.add_argument("--fits", type=int, default=30, help="fits per package per round")
    ap.add_argument("--nsim", type=int, default=1000, help="bootstrap simulations")
    ap.add_argument("--boot-reps", type=int, default=2, help="alternating bootstrap rounds (0: none)")
    ap.add_argument("--mixedlm-python", default=os.environ.get("MIXEDLM_PYTHON", "/work/venv-mixedlm/bin/python"))
    ap.add_argument("--project", default=os.path.dirname(HERE), help="the lmmpy checkout to time")
    ap.add_argument("--only", default="", help="only the models whose name contains this text")
    ap.add_argument("--write", action="store_true", help="write the tables into bench/README.md")
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.project))
    import lmmpy

    have_r = shutil.which("Rscript") is not None
    have_mixedlm = os.path.exists(a.mixedlm_python)
    warnings.simplefilter("ignore")
    load, fit_rows, stage_rows = [], [], []
    fit_header = (
        "| model | lmmpy ms | mixedlm ms | lme4 ms | lmmpy / mixedlm (rounds' range) | lmmpy / lme4 (rounds' range) |"
    )
    stage_header = (
        "| model | "
        + " | ".join(["formula and design", "set-up", "optimizer and checks", "results", "lmer total"])
        + " |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name, text in (("time_mixedlm.py", MIXEDLM_SCRIPT), ("fit.R", R_FIT), ("boot.R", R_BOOT)):
            scripts[name] = os.path.join(tmp, name)
            with open(scripts[name], "w") as fh:
                fh.write(text)
        for name, dataset, factors, formula in CASES:
            if a.only not in name:
                continue
            data = lmmpy.datasets.load(dataset)
            csv = os.path.join(tmp, f"{dataset}.csv")
            data.to_csv(csv, index=False)
            ours, ml, r, stages = [], [], [], []
            for _ in range(a.reps):
                load.append(os.getloadavg()[0])
                t, st = lmmpy_fits(lmmpy, data, formula, a.fits)
                ours.append(t)
                stages.append(st)
                ml.append(
                    child_seconds([a.mixedlm_python, scripts["time_mixedlm.py"], csv, formula, factors, str(a.fits)])
                    if have_mixedlm
                    else None
                )
                r.append(
                    child_seconds(["Rscript", scripts["fit.R"], csv, formula, factors, str(a.fits)]) if have_r else None
                )
            med = lambda xs: None if any(x is None for x in xs) else statistics.median(xs)  # noqa: E731
            line = (
                f"| {name} | {fmt_ms(med(ours))} | {fmt_ms(med(ml))} | {fmt_ms(med(r))} | "
                f"{ratio_text(ours, ml)} | {ratio_text(ours, r)} |"
            )
            print(line, flush=True)
            fit_rows.append(line)
            st = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
            stage_rows.append(f"| {name} | " + " | ".join(fmt_ms(v) for v in st.values()) + f" | {fmt_ms(med(ours))} |")
            print(stage_rows[-1], flush=True)

        boot_lines = []
        if a.boot_reps and "sleepstudy" in "sleepstudy" + a.only and have_r:
            data = lmmpy.datasets.load("sleepstudy")
            csv = os.path.join(tmp, "sleepstudy.csv")
            data.to_csv(csv, index=False)
            fit = lmmpy.lmer(CASES[0][3], data)
            ours, theirs = [], []
            for _ in range(a.boot_reps):
                load.append(os.getloadavg()[0])
                t0 = time.perf_counter()
                fit.confint("boot", nsim=a.nsim, seed=1, progress=False)
                ours.append(time.perf_counter() - t0)
                theirs.append(child_seconds(["Rscript", scripts["boot.R"], csv, CASES[0][3], "Subject", str(a.nsim)]))
            boot_lines = [
                "| model | nsim | lmmpy s | lme4 bootMer s | lmmpy / lme4 (rounds' range) |",
                "|---|---|---|---|---|",
                f"| sleepstudy | {a.nsim} | {statistics.median(ours):.2f} | {statistics.median(theirs):.2f} | "
                f"{ratio_text(ours, theirs)} |",
            ]
            print("\n".join(boot_lines), flush=True)

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
        f"load average during the runs {min(load):.1f}-{max(load):.1f}"
    )
    print(f"\n{machine}; medians of {a.reps} alternating rounds of {a.fits} fits each")
    if a.write:
        from readme_section import write_section  # bench/ is the scripts' folder

        body = (
            f"Command: `python bench/small_models.py --reps {a.reps} --fits {a.fits} --nsim {a.nsim} "
            f"--boot-reps {a.boot_reps}`; {time.strftime('%Y-%m-%d')}.\n"
            f"Machine: {machine}.\nFits: medians of {a.reps} alternating rounds, each the median of "
            f"{a.fits} in-process fits (REML, formula processing included).\n\n"
            + "\n".join([fit_header, "|---|---|---|---|---|---|", *fit_rows])
            + "\n\nlmmpy's stages (ms, medians over the same rounds):\n\n"
            + "\n".join([stage_header, "|---|---|---|---|---|---|", *stage_rows])
            + ("\n\nParametric bootstrap, percentile intervals:\n\n" + "\n".join(boot_lines) if boot_lines else "")
        )
        write_section("small", body, "Small models (issue 14)")


if __name__ == "__main__":
    main()
