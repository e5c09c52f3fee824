#!/usr/bin/env python3
"""The mixedML paper's simulation (its section 5 and appendix B), under K-fold cross-validation.

    python bench/mixedml_simulation.py [--k 3] [--seed 1] [--max-iter 100] [--case linear|nonlinear|both]
                                       [--models lme,lin,mlp,svr] [--write]

Data: J = 200 clusters of n_j ~ U{22..25} rows; p1 = 10 level-1 features ~ N(0, S1) and p2 = 3
level-2 features ~ N(0, S2) (unit variances, covariances 0.1 or 0.3 at random); a random
intercept and random slopes on the 10 level-1 features, independent with variance 1;
sigma_e = 3.5; beta_0 = 5 and every other beta = 1.  The non-linear case adds the squares of
the first five level-1 features (coefficients 1).

Fitted per fold on the training clusters' rows (the folds split rows, so test rows belong to
known clusters and "within" predictions use their random effects):
  LME      lmer with the linear fixed part and (1 + x1 + ... + x10 | cluster)
  LME_nlin the same with the squares (non-linear case: the true model)
  X^M      mixedML around model X (LIN: linear least squares, MLP: MLPRegressor, SVR) by
           M = ML, REML (EM) or OOB (lmer on the residuals every iteration)
and reported as the paper's tables 3 and 4: coefficients (linear models), the variances of
the random effects, the mean covariance, sigma_e, the MSEs (within: f + Z b; out: f alone;
ml: the model trained once without random effects; hot: that model with the cluster one-hot
encoded) on train and test, and the time per fold: mean (sd) over the folds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import lmmpy  # noqa: E402

P1, P2 = 10, 3


def feature_cov(p, rng):
    """Unit variances, covariances 0.1 or 0.3 (a uniform draw against 0.5); redrawn until
    positive definite."""
    while True:
        C = np.where(rng.uniform(size=(p, p)) < 0.5, 0.1, 0.3)
        C = np.triu(C, 1)
        C = C + C.T + np.eye(p)
        if np.linalg.eigvalsh(C).min() > 0:
            return C


def simulate(nonlinear: bool, seed: int = 1, J: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    nj = rng.integers(22, 26, J)
    g = np.repeat(np.arange(J), nj)
    n = g.size
    x1 = rng.multivariate_normal(np.zeros(P1), feature_cov(P1, rng), size=n)
    x2 = rng.multivariate_normal(np.zeros(P2), feature_cov(P2, rng), size=J)[g]
    u = rng.normal(size=(J, P1 + 1))  # Sigma_nu = I
    y = 5 + x1.sum(1) + x2.sum(1) + u[g, 0] + np.einsum("np,np->n", x1, u[g, 1:])
    if nonlinear:
        y += (x1[:, :5] ** 2).sum(1)
    y += rng.normal(0, 3.5, n)
    cols = {f"x1_{i + 1}": x1[:, i] for i in range(P1)} | {f"x2_{i + 1}": x2[:, i] for i in range(P2)}
    return pd.DataFrame({"y": y, "cluster": g, **cols})


L1 = [f"x1_{i + 1}" for i in range(P1)]
L2 = [f"x2_{i + 1}" for i in range(P2)]
RANDOM = f"(1 + {' + '.join(L1)} | cluster)"


def squares(df):
    return df.assign(**{f"q{i + 1}": df[f"x1_{i + 1}"] ** 2 for i in range(5)})


def make_model(kind, seed):
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if kind == "LIN":
        return LinearRegression()
    if kind == "MLP":  # fine-tuned from the last iteration's weights (warm_start)
        return MLPRegressor(hidden_layer_sizes=(32,), max_iter=60, warm_start=True, random_state=seed)
    if kind == "SVR":
        return make_pipeline(StandardScaler(), SVR(C=10.0))
    raise ValueError(kind)


def variance_row(varcorr):
    """Var of each random effect in order, and the mean covariance."""
    vc = varcorr[varcorr.grp == "cluster"]
    var = vc[vc.var2.isna()].vcov.to_numpy()
    cov = vc[vc.var2.notna()].vcov.to_numpy()
    return var, float(cov.mean()) if cov.size else np.nan


def one_fold(name, data, train, test, nonlinear_terms, kind, method, max_iter, seed):
    feats = L1 + L2 + (["q1", "q2", "q3", "q4", "q5"] if nonlinear_terms else [])
    tr, te = data.iloc[train], data.iloc[test]
    out = {"model": name}
    t0 = time.perf_counter()
    if kind == "LME":
        f = f"y ~ {' + '.join(feats)} + {RANDOM}"
        fit = lmmpy.lmer(f, tr)
        out["seconds"] = time.perf_counter() - t0
        coefs = fit.fixef.to_numpy()
        var, cov = variance_row(fit.varcorr)
        sigma = fit.sigma
        pred_in = lambda d: fit.predict(d, allow_new_levels=True).to_numpy()  # noqa: E731
        pred_out = lambda d: fit.predict(d, re_form=np.nan).to_numpy()  # noqa: E731
    else:
        m = lmmpy.MixedML(make_model(kind, seed), method=method.lower(), max_iter=max_iter)
        m.fit(tr[feats], tr.y, groups=tr.cluster, Z=tr[L1])
        out["seconds"] = time.perf_counter() - t0
        est = m.estimator_
        coefs = np.concatenate([[est.intercept_], est.coef_]) if kind == "LIN" else None
        var, cov = variance_row(m.varcorr_)
        sigma = m.sigma_
        pred_in = lambda d: m.predict(d[feats], groups=d.cluster, Z=d[L1])  # noqa: E731
        pred_out = lambda d: m.predict(d[feats])  # noqa: E731
        out["n_iter"] = m.n_iter_
        # the pure model, and the pure model with the cluster one-hot encoded
        pure = make_model(kind, seed).fit(tr[feats], tr.y)

        def hot_cols(d):
            one_hot = pd.get_dummies(
                pd.Categorical(d.cluster, categories=sorted(data.cluster.unique())), prefix="c", dtype=float
            )
            return pd.concat([d[feats].reset_index(drop=True), one_hot], axis=1)

        hot = make_model(kind, seed).fit(hot_cols(tr), tr.y) if method == "OOB" else None
        for part, d in (("train", tr), ("test", te)):
            out[f"MSE_ml ({part})"] = np.mean((d.y.to_numpy() - pure.predict(d[feats])) ** 2)
            if hot is not None:
                out[f"MSE_hot ({part})"] = np.mean((d.y.to_numpy() - hot.predict(hot_cols(d))) ** 2)
    for part, d in (("train", tr), ("test", te)):
        out[f"MSE_within ({part})"] = np.mean((d.y.to_numpy() - pred_in(d)) ** 2)
        out[f"MSE_out ({part})"] = np.mean((d.y.to_numpy() - pred_out(d)) ** 2)
    if coefs is not None:
        for nm, c in zip(["bias"] + feats, coefs):
            out[nm] = c
    for i, v in enumerate(var):
        out[f"Var(x{i})" if i else "Var(bias)"] = v
    out["Cov (mean)"] = cov
    out["sigma_e"] = sigma
    return out


def run(case, k, seed, max_iter, kinds):
    nonlinear = case == "nonlinear"
    data = simulate(nonlinear, seed)
    data = squares(data)
    rng = np.random.default_rng(seed + 1)
    folds = np.array_split(rng.permutation(len(data)), k)
    specs = []
    if "lme" in kinds:
        specs.append(("LME_lin", "LME", None, False))
        if nonlinear:
            specs.append(("LME_nlin", "LME", None, True))
    for kind in ("LIN", "MLP", "SVR"):
        if kind.lower() in kinds and not (kind == "LIN" and nonlinear):
            for method in ("OOB", "ML", "REML"):
                specs.append((f"{kind}^{method}", kind, method, False))
    rows = []
    for i in range(k):
        test = folds[i]
        train = np.concatenate([folds[j] for j in range(k) if j != i])
        for name, kind, method, nl in specs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows.append(one_fold(name, data, train, test, nl, kind, method, max_iter, seed) | {"fold": i})
            print(f"  fold {i + 1}/{k} {name}: {rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    res = pd.DataFrame(rows)
    cols = [c for c in res.columns if c not in ("model", "fold")]
    first = [c for c in cols if not c.startswith(("MSE", "n_iter", "seconds"))]
    order = first + sorted(c for c in cols if c.startswith("MSE")) + [c for c in ("n_iter", "seconds") if c in cols]
    mean = res.groupby("model", sort=False)[order].mean().T
    sd = res.groupby("model", sort=False)[order].std().T
    table = mean.copy().astype(object)
    for c in mean.columns:
        table[c] = [
            ("." if np.isnan(m) else f"{m:.2f} ({s:.2f})" if k > 1 else f"{m:.2f}")
            for m, s in zip(mean[c], sd[c].fillna(0))
        ]
    sim = {"bias": "5.00", "sigma_e": "3.50", "Cov (mean)": "0.00"}
    table.insert(
        0,
        "sim",
        [
            sim.get(r, "1.00" if (r.startswith("x") or r.startswith("q") or r.startswith("Var")) else ".")
            for r in table.index
        ],
    )
    return data, table


def to_markdown(table) -> str:
    cols = ["", *table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row)]) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=3, help="folds (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-iter", type=int, default=100, help="mixedML iterations at most")
    ap.add_argument("--case", choices=["linear", "nonlinear", "both"], default="both")
    ap.add_argument("--models", default="lme,lin,mlp,svr")
    ap.add_argument("--write", action="store_true", help="put the tables into bench/README.md")
    args = ap.parse_args(argv)
    kinds = set(args.models.lower().split(","))
    out = []
    for case in ["linear", "nonlinear"] if args.case == "both" else [args.case]:
        print(f"{case} case, {args.k}-fold:", file=sys.stderr)
        data, table = run(case, args.k, args.seed, args.max_iter, kinds)
        text = f"### {case} case (N = {len(data)}, J = 200, {args.k}-fold CV, mean (sd) over folds)\n\n" + to_markdown(
            table
        )
        print(text + "\n")
        out.append(text)
    if args.write:
        path = os.path.join(HERE, "README.md")
        readme = open(path).read()
        start, end = "<!-- mixedml -->", "<!-- /mixedml -->"
        block = (
            f"{start}\nCommand: `python bench/mixedml_simulation.py --k {args.k} --max-iter {args.max_iter}`; "
            f"{time.strftime('%Y-%m-%d')}.\n\n" + "\n\n".join(out) + f"\n{end}"
        )
        if start in readme:
            readme = readme[: readme.index(start)] + block + readme[readme.index(end) + len(end) :]
        else:
            readme += "\n## mixedML simulation (the paper's tables 3 and 4)\n\n" + block + "\n"
        open(path, "w").write(readme)


if __name__ == "__main__":
    main()
