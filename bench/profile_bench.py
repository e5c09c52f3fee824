#!/usr/bin/env python3
"""Profile confidence intervals: lmmpy's ``fit.confint("profile")`` against lme4's
``confint(fm, method = "profile")``, side by side.

    python bench/profile_bench.py [--reps N] [--only NAME] [--write]

For each model the two are run in alternation, --reps rounds of one lmmpy run and one lme4 run
(Rscript on the same data written to CSV, timed inside R, so R's start-up is not counted), so
that both see the same load on a shared machine; the table gives the median seconds of each,
the ratio of the medians (and the range of the per-round ratios), and the largest relative
difference between the two sets of interval ends.  Both time the whole confint: for a REML fit
that includes its ML refit (lme4 profiles the ML deviance, as lmmpy does).  The fits themselves
are not timed.  --write puts the table into bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from readme_section import write_section  # bench/ is the scripts' folder

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CASES = [  # name, bundled data set, its factors, formula, REML
    ("sleepstudy (REML)", "sleepstudy", "Subject", "Reaction ~ Days + (Days | Subject)", True),
    ("S&B random slope (ML)", "mlbook2", "schoolnr", "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)", False),
    ("Penicillin (crossed, REML)", "Penicillin", "plate,sample", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
]

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
m <- lmer(as.formula(args[2]), data = d, REML = as.logical(args[4]))
t <- system.time(ci <- confint(m, method = "profile", quiet = TRUE))[["elapsed"]]
cat(sprintf("%.6f\n", t)); cat(sprintf("%.12g %.12g\n", ci[, 1], ci[, 2]), sep = "")
"""


def time_lmmpy(fit):
    t0 = time.perf_counter()
    ci = fit.confint("profile", progress=False)
    return time.perf_counter() - t0, ci.to_numpy()


def time_lme4(csv, script, formula, factors, reml):
    r = subprocess.run(
        ["Rscript", script, csv, formula, factors, str(reml).upper()], capture_output=True, text=True, timeout=900
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    lines = r.stdout.split("\n")
    return float(lines[0]), np.array([[float(v) for v in ln.split()] for ln in lines[1:] if ln.strip()])


def lme4_version():
    r = subprocess.run(["Rscript", "-e", 'cat(as.character(packageVersion("lme4")))'], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="rounds (one run of each) per model")
    ap.add_argument("--only", default="", help="run only the models whose name contains this text")
    ap.add_argument("--write", action="store_true", help="write the table into bench/README.md")
    a = ap.parse_args()
    if not shutil.which("Rscript"):
        sys.exit("Rscript (with lme4) is needed: apt-get install r-base-core r-cran-lme4")
    import lmmpy

    header = "| model | lmmpy s | lme4 s | lmmpy / lme4 (rounds' range) | max rel. diff. of the ends |"
    rule = "|---|---|---|---|---|"
    print(header)
    print(rule)
    rows, load = [], []
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "profile.R")
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        for name, dataset, factors, formula, reml in CASES:
            if a.only not in name:
                continue
            d = lmmpy.datasets.load(dataset)
            csv = os.path.join(tmp, f"{dataset}.csv")
            d.to_csv(csv, index=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = lmmpy.lmer(formula, d, REML=reml)
            ours, theirs = [], []
            for _ in range(a.reps):
                load.append(os.getloadavg()[0])
                t, ci_ours = time_lmmpy(fit)
                ours.append(t)
                t, ci_lme4 = time_lme4(csv, script, formula, factors, reml)
                theirs.append(t)
            ratios = np.array(ours) / np.array(theirs)
            ends = np.abs(ci_ours - ci_lme4) / np.maximum(np.abs(ci_lme4), 1e-8)
            line = (
                f"| {name} | {np.median(ours):.3g} | {np.median(theirs):.3g} | "
                f"{np.median(ours) / np.median(theirs):.2f} ({ratios.min():.2f}-{ratios.max():.2f}) | "
                f"{np.max(ends):.1e} |"
            )
            print(line, flush=True)
            rows.append(line)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, lme4 {lme4_version()}; load average during the runs "
        f"{min(load):.1f}-{max(load):.1f}"
    )
    print(f"\n{machine}; medians of {a.reps} alternating rounds")
    if a.write:
        write_readme([header, rule, *rows], machine, a.reps)


def write_readme(lines, machine, reps):
    write_section(
        "profile",
        f"Machine: {machine}; {time.strftime('%Y-%m-%d')}; medians of {reps} alternating rounds.\n\n"
        + "\n".join(lines),
        "Profile intervals",
    )


if __name__ == "__main__":
    main()
