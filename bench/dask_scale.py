"""The scale proof of lmmpy on Dask: ``y ~ x + (1 | a) + (1 | b)`` on 10M, 30M, 100M rows.

The rows are made by the workers and never held in one process: ``dask.dataframe.from_map``
calls :func:`make_partition` with a seed per partition, on the worker that reduces it.  The
simulated model (the same in every partition: the random effects come from one fixed seed):

    y = 1 + 0.5 x + u_a + v_b + e,  u ~ N(0, 0.8^2) (a: 100,000 levels),
    v ~ N(0, 0.5^2) (b: 1,000 levels),  e ~ N(0, 1),  x ~ N(0, 1)

a uniform over its levels; b drawn from a window of WINDOW consecutive levels (mod 1,000)
that moves with a: every b meets ~5,000 a's, every a ~WINDOW b's (users and items with
locality).  The window keeps Z_b'Z_a's pattern of pairs (sum over a of its b's squared)
within what the criterion evaluates in memory; a fully crossed 100,000 x 1,000 design at
these sizes is the wide-crossed work of issue 14's item 2, not the data's size.  a and b are
categorical with declared categories, so no pass is spent finding their levels.

Run: ``python bench/dask_scale.py --rows 10M 30M 100M [--write]``; each size runs in its own
process with its own LocalCluster of 2 worker processes (1 thread each); the client's peak is
its ru_maxrss, a worker's its resident memory sampled every 0.1 s (the largest worker's shown).  ``--write`` puts the table into bench/README.md between its dask-scale markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_A, N_B, WINDOW = 100_000, 1_000, 20
SD_A, SD_B, SIGMA, BETA = 0.8, 0.5, 1.0, (1.0, 0.5)
ROWS_PER_PARTITION = 1_000_000
EFFECTS_SEED = 20261201


def effects():
    rng = np.random.default_rng(EFFECTS_SEED)
    return rng.normal(0, SD_A, N_A), rng.normal(0, SD_B, N_B)


def make_partition(spec) -> pd.DataFrame:
    """One partition's rows from (seed, rows): run on a worker."""
    seed, rows = spec
    u, v = effects()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, N_A, rows)
    b = (a * N_B // N_A + rng.integers(0, WINDOW, rows)) % N_B
    x = rng.normal(size=rows)
    y = BETA[0] + BETA[1] * x + u[a] + v[b] + rng.normal(0, SIGMA, rows)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": pd.Categorical.from_codes(a, categories=pd.RangeIndex(N_A)),
            "b": pd.Categorical.from_codes(b, categories=pd.RangeIndex(N_B)),
        }
    )


def peak_mb() -> float:
    """This process's peak resident memory (the client runs one size per process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_rss_sampler():
    """On a worker: sample its resident memory every 0.1 s (a worker forked from the nanny
    inherits its ru_maxrss, so the kernel's peak would not be the worker's own)."""
    import threading

    import psutil

    proc = psutil.Process()
    state = sys.__dict__.setdefault("_lmmpy_rss_peak", [0])

    def sample():
        while True:
            state[0] = max(state[0], proc.memory_info().rss)
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()


def sampled_peak_mb() -> float:
    return sys.__dict__.get("_lmmpy_rss_peak", [0])[0] / 2**20


def run(n_rows: int, client) -> dict:
    import dask.dataframe as dd

    import lmmpy

    parts = [(1000 * n_rows // ROWS_PER_PARTITION + i, ROWS_PER_PARTITION) for i in range(n_rows // ROWS_PER_PARTITION)]
    meta = make_partition((0, 0))
    ddf = dd.from_map(make_partition, parts, meta=meta, enforce_metadata=False)
    client.run(start_rss_sampler)
    t0 = time.perf_counter()
    fit = lmmpy.lmer("y ~ x + (1 | a) + (1 | b)", ddf, REML=False)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = str(fit.summary())  # the residual quantiles: one more pass
    t_summary = time.perf_counter() - t0
    vc = fit.varcorr.set_index("grp")["sdcor"]
    workers = client.run(sampled_peak_mb)
    return dict(
        rows=n_rows,
        partitions=len(parts),
        fit_s=t_fit,
        summary_s=t_summary,
        evals=fit.optsum.n_evals,
        client_mb=peak_mb(),
        worker_mb=max(workers.values()),
        beta=fit.fixef.to_numpy(),
        sd_a=vc["a"],
        sd_b=vc["b"],
        sigma=vc["Residual"],
        summary=text,
    )


def table(results) -> str:
    head = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), LocalCluster of 2 worker processes x 1 "
        f"thread; {time.strftime('%Y-%m-%d')}.  Simulated: beta = (1, 0.5), sd_a = {SD_A}, sd_b = {SD_B}, "
        f"sigma = {SIGMA}.\n\n"
        "| rows | partitions | fit s | summary pass s | evals | client peak MB | worker peak MB | (Intercept) | x "
        "| sd_a | sd_b | sigma |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['rows']:,} | {r['partitions']} | {r['fit_s']:.0f} | {r['summary_s']:.0f} | {r['evals']} "
        f"| {r['client_mb']:.0f} | {r['worker_mb']:.0f} | {r['beta'][0]:.4f} | {r['beta'][1]:.5f} "
        f"| {r['sd_a']:.4f} | {r['sd_b']:.4f} | {r['sigma']:.5f} |"
        for r in results
    ]
    return head + "\n".join(lines) + "\n"


def write_readme(text: str):
    path = ROOT / "bench" / "README.md"
    readme = path.read_text()
    block = f"<!-- dask-scale -->\n{text}<!-- /dask-scale -->"
    if "<!-- dask-scale -->" in readme:
        readme = re.sub(r"<!-- dask-scale -->.*?<!-- /dask-scale -->", lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip("\n") + "\n\n## Data larger than memory (Dask)\n\n" + block + "\n"
    path.write_text(readme)


def parse_rows(text: str) -> int:
    m = re.fullmatch(r"(\d+)([MK]?)", text.upper())
    return int(m.group(1)) * {"M": 1_000_000, "K": 1_000, "": 1}[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", nargs="+", default=["10M", "30M"])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--memory-limit", default="6GB")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    if args.one:  # one size in this process with its own cluster: the peaks are that size's
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=args.memory_limit, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            res = run(parse_rows(args.one), client)
        print(res.pop("summary"), flush=True)
        plain = {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in res.items()}
        print("RESULT", json.dumps(plain), flush=True)
        return
    results = []
    for r in args.rows:
        cmd = [sys.executable, __file__, "--one", r, "--memory-limit", args.memory_limit]
        out = subprocess.run(cmd, capture_output=True, text=True)
        print(out.stdout, flush=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(out.stderr[-3000:], flush=True)
            continue
        res = json.loads(line[0][len("RESULT ") :])
        res["beta"] = np.array(res["beta"])
        res["rows"], res["partitions"], res["evals"] = int(res["rows"]), int(res["partitions"]), int(res["evals"])
        results.append(res)
    text = table(results)
    print(text)
    if args.write:
        write_readme(text)


if __name__ == "__main__":
    main()
