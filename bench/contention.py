#!/usr/bin/env python3
"""Fit times beside a busy process: lmmpy's BLAS thread rule against the old behaviour.

    python bench/contention.py [--reps N] [--budget SECONDS] [--only NAME] [--no-lme4] [--write]

For each model (InstEval's y ~ service + (1|s) + (1|d) + (1|dept), REML, and sleepstudy) and
each thread mode -- "rule" (lmmpy's default, lmmpy/linalg/threads.py), "old" (BLAS threads
as the process has them, ``blas_threads="inherit"``: lmmpy before the rule) and "1 thread"
(``blas_threads=1``) -- the fit is timed --reps times (median, and the range) on the machine
as it is ("quiet"), then again beside a second process that runs LAPACK with its default
threads (numpy.linalg.cholesky of a 2000 x 2000 matrix in a loop, started and stopped by this
script: the second notebook, joblib worker or pytest-xdist process).  The modes alternate
within each repetition, so a passing load falls on all of them alike; a cell stops repeating
once its fits took --budget seconds.  "busy/quiet" divides each busy median by the same
mode's quiet median; the target is InstEval's rule <= 2.5, with its quiet time within noise
of the old quiet time.  The CPU load other processes put on the machine is sampled before
each phase and printed, since a "quiet" phase on a shared machine is not quiet.  Where
Rscript and lme4 are installed, lme4's fits are timed in both phases too (bench/benchmark.py's
R script: the median of --lme4-reps fits inside R, R's reference BLAS).
--write puts the table into bench/README.md.

Run it with BLAS at its defaults: OPENBLAS_NUM_THREADS and the like unset (it says so if not).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

from readme_section import write_section  # bench/ is the scripts' folder

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import lmmpy  # noqa: E402
from benchmark import time_lme4  # noqa: E402
from lmmpy.linalg import threads  # noqa: E402

CASES = [
    ("InstEval", "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)"),
    ("sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
]
MODES = [("rule", None), ("old", "inherit"), ("1 thread", 1)]

NEIGHBOUR = """
import sys, numpy as np
a = np.random.default_rng(0).standard_normal((2000, 2000))
a = a @ a.T + 2000 * np.eye(2000)
np.linalg.cholesky(a)
print("ready", flush=True)
while True:
    np.linalg.cholesky(a)
"""


def start_neighbour():
    """A process doing LAPACK with its default threads, until stopped."""
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_ENV_VARS}
    p = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("the busy process did not start")
    time.sleep(1.0)  # its threads running
    return p


def stop(p):
    p.terminate()
    p.wait(timeout=10)


def load_note():
    """Other processes' load now: idle cores over 0.5 s, and the 1-minute load average."""
    cpus = threads.usable_cpus()
    idle = threads.idle_cores(cpus, seconds=0.5)
    return (
        f"{len(cpus)} cores, {idle:.1f} idle over 0.5 s, load average {os.getloadavg()[0]:.1f}"
        if idle is not None
        else f"{len(cpus)} cores"
    )


def time_cells(data, reps, budget, only, lme4_reps):
    """{(case, mode): [seconds...]} and {(case, mode): threads used}, one phase."""
    times, used = {}, {}
    for case, dataset, formula in CASES:
        if only and only.lower() not in case.lower():
            continue
        d = data[dataset]
        for mode, _ in MODES:
            times[case, mode] = []
        for r in range(reps):
            for mode, request in MODES:
                cell = times[case, mode]
                if sum(cell) > budget:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    fit = lmmpy.lmer(formula, d, control={"blas_threads": request})
                    cell.append(time.perf_counter() - t0)
                used[case, mode] = fit.optsum.blas_threads
                print(f"  {case:10s} {mode:8s} {cell[-1]:8.3f} s  ({fit.optsum.blas_threads} BLAS threads)", flush=True)
        if lme4_reps:
            r = time_lme4(("bundled", dataset), formula, True, lme4_reps, limit=600)
            if r is not None:
                times[case, "lme4"] = [r["seconds"]]  # the median of lme4_reps fits in R
                print(f"  {case:10s} lme4     {r['seconds']:8.3f} s  (median of {lme4_reps})", flush=True)
    return times, used


def fmt(ts):
    if not ts:
        return "."
    med = float(np.median(ts))
    digits = 3 if med < 1 else 2
    return (
        f"{med:.{digits}f} ({min(ts):.{digits}f}-{max(ts):.{digits}f}, n={len(ts)})"
        if len(ts) > 1
        else f"{med:.{digits}f} (n=1)"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=90.0, help="seconds of fits per cell, at most")
    ap.add_argument("--only", default="", help="run the models whose name contains this")
    ap.add_argument("--no-lme4", action="store_true", help="do not time lme4")
    ap.add_argument("--lme4-reps", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the table into bench/README.md")
    a = ap.parse_args()
    lme4_reps = 0 if a.no_lme4 else a.lme4_reps
    user_env = {k: os.environ[k] for k in threads.THREAD_ENV_VARS if k in os.environ}
    if user_env:
        print(f"note: {user_env} set: the 'old' mode runs with these limits, not BLAS's defaults")
    blas = [
        f"{i['internal_api']} {i['version']} ({i['num_threads']} threads, {i.get('architecture')})"
        for i in __import__("threadpoolctl").threadpool_info()
        if i["user_api"] == "blas"
    ]
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    data = {ds: lmmpy.datasets.load(ds) for _, ds, _ in CASES}
    lmmpy.lmer(CASES[1][2], data["sleepstudy"])  # imports and caches warm

    notes = {}
    notes["quiet"] = load_note()
    print(f"quiet phase: {notes['quiet']}", flush=True)
    quiet, used_q = time_cells(data, a.reps, a.budget, a.only, lme4_reps)
    neighbour = start_neighbour()
    try:
        notes["busy"] = load_note()
        print(f"busy phase (beside the LAPACK process): {notes['busy']}", flush=True)
        busy, used_b = time_cells(data, a.reps, a.budget, a.only, lme4_reps)
    finally:
        stop(neighbour)

    header = (
        "| model | threads | quiet: s, median (range, n) | busy: s, median (range, n) | busy/quiet | busy/quiet(old) |"
    )
    rows = []
    for case, _, _ in CASES:
        for mode in [m for m, _ in MODES] + ["lme4"]:
            if (case, mode) not in quiet or (case, mode) not in busy:
                continue
            q, b = quiet[case, mode], busy[case, mode]
            q_old = quiet[case, "old"]
            ratio = np.median(b) / np.median(q) if q and b else np.nan
            ratio_old = np.median(b) / np.median(q_old) if q_old and b else np.nan
            used = "R's BLAS" if mode == "lme4" else f"{used_q.get((case, mode))} / {used_b.get((case, mode))}"
            cells = (
                (fmt(q), fmt(b))
                if mode != "lme4"
                else (f"{q[0]:.2f} (median of {lme4_reps} in R)", f"{b[0]:.2f} (median of {lme4_reps} in R)")
            )
            rows.append(
                f"| {case} | {mode} ({used}) | {cells[0]} | {cells[1]} | {ratio:.2f} | "
                + ("." if mode == "lme4" else f"{ratio_old:.2f}")
                + " |"
            )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
        f"{np.__version__}; BLAS: {'; '.join(blas)}; OPENBLAS_CORETYPE {coretype}"
    )
    print()
    print(f"Machine: {machine}")
    print(f"Load from other processes: quiet phase {notes['quiet']}; busy phase {notes['busy']}")
    print(header)
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    if a.write:
        write_readme([header, "|---|---|---|---|---|---|", *rows], machine, notes)


def write_readme(lines, machine, notes):
    write_section(
        "contention",
        f"Machine: {machine}; {time.strftime('%Y-%m-%d')}.\n"
        f"Load from other processes: quiet phase {notes['quiet']}; busy phase {notes['busy']}.\n\n" + "\n".join(lines),
    )


if __name__ == "__main__":
    main()
