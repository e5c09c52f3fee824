"""lmmpy.glmer against lme4's glmer, side by side in one run (issue 15).

    python bench/glmm_benchmark.py [--only verbagg|sim250k] [--no-lme4]

- VerbAgg, binomial with crossed random intercepts (7,584 rows, 316 x 24 levels);
  target: lmmpy <= 0.2 x glmer.
- simulated: 250,000 binary rows, 700 subjects, a random intercept and slope;
  target: lmmpy <= 0.1 x glmer.
Each side fits a model several times in one process (VerbAgg 5, the 250k model once) and the
median is reported (a single fit's time on a shared machine varies by a third), formula
processing included; lme4 runs through Rscript on the same CSV (its time is glmer's own, R's
start-up and reading excluded).  Prints the machine's load average and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lmmpy  # noqa: E402

R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], stringsAsFactors = TRUE)
for (f in strsplit(a[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
times <- c()
for (r in seq_len(as.integer(a[4]))) {
  t0 <- proc.time()[["elapsed"]]
  m <- suppressWarnings(glmer(as.formula(a[2]), data = d, family = binomial))
  times <- c(times, proc.time()[["elapsed"]] - t0)
}
cat(sprintf('{"seconds": %.6f, "m2ll": %.8f}', median(times), -2 * as.numeric(logLik(m))))
"""


def simulated(n=250_000, subjects=700, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, subjects, n)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(0, 0.8, subjects), rng.normal(0, 0.4, subjects)
    eta = -0.3 + 0.7 * x + b0[g] + b1[g] * x
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "subject": g.astype(str)})


CASES = {  # label, formula, factors, target ratio, fits timed (the median is reported)
    "verbagg": ("VerbAgg crossed binomial", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "id", 0.2, 5),
    "sim250k": ("simulated 250k binary, 700 subjects, slope", "y ~ x + (x | subject)", "subject", 0.1, 1),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--no-lme4", action="store_true")
    a = ap.parse_args()
    load_before = os.getloadavg()
    rows = []
    for key, (label, formula, factors, target, repeats) in CASES.items():
        if a.only and a.only not in key:
            continue
        d = lmmpy.datasets.load("VerbAgg") if key == "verbagg" else simulated()
        for f in factors.split(","):
            d[f] = d[f].astype(str).astype("category")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = lmmpy.glmer(formula, d, family="binomial")
            times.append(time.perf_counter() - t0)
        ours = float(np.median(times))
        r = {"seconds": float("nan"), "m2ll": float("nan")}
        if not a.no_lme4:
            with tempfile.TemporaryDirectory() as tmp:
                csv, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
                d.to_csv(csv, index=False)
                script.write_text(R_SCRIPT)
                out = subprocess.run(
                    ["Rscript", str(script), str(csv), formula, factors, str(repeats)], capture_output=True, text=True
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((label, ours, r["seconds"], -2 * fit.loglik - r["m2ll"], target))
    # the machine's load (other jobs share it): the 1-minute load average before and after
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n")
    print("| model | lmmpy (s) | glmer (s) | ratio | target | -2logLik lmmpy - lme4 |")
    print("|---|---|---|---|---|---|")
    for label, ours, theirs, diff, target in rows:
        print(f"| {label} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | <= {target} | {diff:+.2e} |")


if __name__ == "__main__":
    main()
