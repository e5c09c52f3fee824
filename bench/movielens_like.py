#!/usr/bin/env python3
"""A MovieLens-1M-shaped data set: 1,000,209 ratings of 3,706 items by 6,040 users.

    python bench/movielens_like.py [--out ratings.csv]

Each user rates a lognormal (sigma 1.25) number of distinct items (at least 20, at most 2,314, the counts
summing to 1,000,209, as in MovieLens-1M), chosen without replacement with Zipf popularity
p_r proportional to 1 / (r + 10) over the items' ranks r (the Gumbel top-k trick: the k largest
of log p_r + Gumbel noise are a weighted sample without replacement).  Ratings are
3.5 + user effect (sd 0.5) + item effect (sd 0.7) + noise (sd 0.9), so the model
``y ~ 1 + (1 | u) + (1 | m)`` fits it.  The seed is fixed: the same data every run.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

N_RATINGS, N_USERS, N_ITEMS = 1_000_209, 6_040, 3_706
MIN_PER_USER, MAX_PER_USER = 20, 2_314
FORMULA = "y ~ 1 + (1 | u) + (1 | m)"


def user_counts(rng) -> np.ndarray:
    """Lognormal activity, clipped to [20, 2314], rescaled to sum to N_RATINGS exactly."""
    raw = rng.lognormal(mean=0.0, sigma=1.25, size=N_USERS)
    extra = N_RATINGS - MIN_PER_USER * N_USERS  # spread over the users in proportion to raw
    share = raw / raw.sum() * extra
    for _ in range(50):  # clip at the maximum, give what the clipped lose to the others
        capped = share >= MAX_PER_USER - MIN_PER_USER
        share[capped] = MAX_PER_USER - MIN_PER_USER
        free = ~capped
        share[free] *= (extra - share[capped].sum()) / share[free].sum()
        if share.max() <= MAX_PER_USER - MIN_PER_USER:
            break
    counts = MIN_PER_USER + np.minimum(np.floor(share).astype(np.int64), MAX_PER_USER - MIN_PER_USER)
    short = N_RATINGS - counts.sum()  # what flooring took off, put back one by one
    room = np.flatnonzero(counts < MAX_PER_USER)
    counts[rng.choice(room, size=short, replace=False)] += 1
    return counts


def movielens_like(seed: int = 20261201) -> pd.DataFrame:
    """The ratings: columns y (float), u and m (categorical), one row per (user, item)."""
    rng = np.random.default_rng(seed)
    counts = user_counts(rng)
    log_p = -np.log(np.arange(N_ITEMS) + 10.0)
    items = np.empty(N_RATINGS, dtype=np.int64)
    start = 0
    for j0 in range(0, N_USERS, 500):  # 500 users at a time: keys 500 x 3706
        keys = log_p + rng.gumbel(size=(min(N_USERS, j0 + 500) - j0, N_ITEMS))
        order = np.argsort(-keys, axis=1)
        for row, c in zip(order, counts[j0 : j0 + 500]):
            items[start : start + c] = row[:c]
            start += c
    users = np.repeat(np.arange(N_USERS), counts)
    perm = rng.permutation(N_ITEMS)  # item ids not in popularity order
    items = perm[items]
    y = 3.5 + rng.normal(0, 0.5, N_USERS)[users] + rng.normal(0, 0.7, N_ITEMS)[items] + rng.normal(0, 0.9, N_RATINGS)
    return pd.DataFrame(
        {
            "y": y,
            "u": pd.Categorical(users),
            "m": pd.Categorical(items, categories=np.arange(N_ITEMS)),
        }
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the ratings to this CSV (u, m as integer codes)")
    a = ap.parse_args()
    d = movielens_like()
    n_pairs = int((lambda c: (c * (c + 1) // 2).sum())(d["u"].value_counts().to_numpy()))
    print(
        f"{len(d):,} ratings, {d['u'].nunique():,} users x {d['m'].nunique():,} items; "
        f"ratings per item: max {d['m'].value_counts().max():,}; user pairs {n_pairs:,}"
    )
    if a.out:
        d.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
