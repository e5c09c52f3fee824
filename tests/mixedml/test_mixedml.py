"""mixedML: random effects around any regression model.

With a linear fixed part its fixed point is the linear mixed model's, so MixedML must give
lmer's (lme4-tested) estimates; the EM step itself is checked against the paper's Table 1
computed densely (V_j, P_j per cluster)."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.mixedml.random_part import RandomPart, RandomState

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LinearRegression  # noqa: E402

SLOPE = "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)"


@pytest.fixture(scope="module")
def sleep():
    return lmmpy.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def mlbook():
    return lmmpy.datasets.load("mlbook2")


def _compare(m, fit, coef_tol=1e-3, vc_rel=1e-2):
    coefs = np.concatenate([[m.estimator_.intercept_], np.ravel(m.estimator_.coef_)])
    np.testing.assert_allclose(coefs, fit.fixef.to_numpy(), atol=coef_tol)
    ref = fit.varcorr.vcov.to_numpy()
    got = m.varcorr_.vcov.to_numpy()
    assert np.all(np.abs(got - ref) <= vc_rel * np.abs(ref) + 1e-8), (got, ref)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_linear_fixed_part_is_lmer_on_sleepstudy(sleep, method):
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=method == "reml")
    m = lmmpy.MixedML(LinearRegression(), method=method).fit(
        sleep[["Days"]], sleep.Reaction, groups=sleep.Subject, Z=sleep[["Days"]]
    )
    assert m.converged_ and m.n_iter_ < 200
    _compare(m, fit, coef_tol=1e-5, vc_rel=1e-4)
    # the conditional modes are lmer's too
    np.testing.assert_allclose(m.ranef_["Subject"].to_numpy(), fit.ranef["Subject"].to_numpy(), atol=1e-3)
    assert m.sigma_ == pytest.approx(fit.sigma, rel=1e-5)


@pytest.mark.parametrize("method", ["reml", "ml", "oob"])
def test_linear_fixed_part_is_lmer_on_snijders_bosker_slope_model(mlbook, method):
    fit = lmmpy.lmer(SLOPE, mlbook, REML=method != "ml")
    m = lmmpy.MixedML.from_formula(SLOPE, mlbook, estimator=LinearRegression(), method=method)
    assert m.converged_
    _compare(m, fit)


def test_singular_interaction_model_reaches_the_boundary_optimum(mlbook):
    """The mixedML paper's Table 5 model: lme4's fit is singular; EM alone crawls towards the
    boundary, the final polish puts the random part on lme4's optimum."""
    f = "langPOST ~ (IQ_verb + ses + sch_iqv + sch_ses)^2 + (IQ_verb + ses | schoolnr)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(f, mlbook)
    m = lmmpy.MixedML.from_formula(f, mlbook, estimator=LinearRegression())
    assert m.converged_
    _compare(m, fit)
    model = m.random_part_.model
    model.REML = True
    assert model(m.theta_) <= fit.objective + 1e-6  # criterion invariant to the linear f


def test_default_fixed_part_and_crossed_groups():
    pen = lmmpy.datasets.load("Penicillin")
    fit = lmmpy.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    m = lmmpy.MixedML().fit(np.zeros((len(pen), 1)), pen.diameter, groups=pen[["plate", "sample"]])
    assert set(m.ranef_) == {"plate", "sample"}
    np.testing.assert_allclose(m.varcorr_.vcov.to_numpy(), fit.varcorr.vcov.to_numpy(), rtol=1e-3)


def test_em_step_is_the_papers_table_1(sleep):
    """One REML and one ML update from an arbitrary (Sigma, sigma^2), against the dense
    per-cluster formulas of the paper (V_j, P_j, never used by lmmpy), with b = Sigma Z'P e
    (see lmmpy.mixedml.random_part on profiling gamma)."""
    X = np.column_stack([np.ones(len(sleep)), sleep.Days.to_numpy(float)])
    part = RandomPart.from_arrays(sleep.Subject, sleep[["Days"]], X, len(sleep))
    rng = np.random.default_rng(1)
    e = sleep.Reaction.to_numpy() - 250 - 10 * sleep.Days.to_numpy() + rng.normal(size=len(sleep))
    Sigma, s2 = np.array([[500.0, 20.0], [20.0, 40.0]]), 700.0
    T = np.linalg.cholesky(Sigma / s2)
    state = RandomState(np.array([T[0, 0], T[1, 0], T[1, 1]]), s2, None, np.zeros(len(e)))
    codes = part.terms[0].codes
    Zs = [part.terms[0].X[codes == j] for j in range(18)]
    es = [e[codes == j] for j in range(18)]
    Xs = [X[codes == j] for j in range(18)]
    Vinv = [np.linalg.inv(Z @ Sigma @ Z.T + s2 * np.eye(len(Z))) for Z in Zs]
    XVX = sum(x.T @ v @ x for x, v in zip(Xs, Vinv))
    for reml in (False, True):
        new = part.em_step(e, state, reml=reml)
        S_acc, s_acc = np.zeros((2, 2)), 0.0
        import scipy.linalg as sla

        V_inv = sla.block_diag(*Vinv)
        Xall = np.vstack(Xs)
        # P = V^-1 - V^-1 X (X'V^-1 X)^-1 X' V^-1 over all clusters (block-coupled)
        P_full = V_inv - V_inv @ Xall @ np.linalg.solve(XVX, Xall.T @ V_inv)
        gamma = np.linalg.solve(XVX, Xall.T @ V_inv @ np.concatenate(es))
        start = 0
        for Z, v, ej, xj in zip(Zs, Vinv, es, Xs):
            nj = len(Z)
            P = P_full[start : start + nj, start : start + nj] if reml else v
            start += nj
            u = Sigma @ Z.T @ v @ (ej - xj @ gamma)
            r = ej - xj @ gamma - Z @ u
            S_acc += np.outer(u, u) + Sigma - Sigma @ Z.T @ P @ Z @ Sigma
            s_acc += r @ r + s2 * np.trace(np.eye(nj) - s2 * P)
        Sigma_new, s2_new = S_acc / 18, s_acc / len(e)
        assert new.sigma2 == pytest.approx(s2_new, rel=1e-10)
        Tn = part.templates(new.theta)[0]
        np.testing.assert_allclose(new.sigma2 * Tn @ Tn.T, Sigma_new, rtol=1e-9)


def test_predict_within_and_out(mlbook):
    X = mlbook[["IQ_verb", "ses", "sch_iqv"]]
    m = lmmpy.MixedML(LinearRegression()).fit(X, mlbook.langPOST, groups=mlbook.schoolnr, Z=mlbook[["IQ_verb"]])
    within = m.predict(X, groups=mlbook.schoolnr, Z=mlbook[["IQ_verb"]])
    out = m.predict(X)
    np.testing.assert_allclose(within, m.fitted_, atol=1e-9)
    np.testing.assert_allclose(out, m.fitted_fixed_, atol=1e-9)
    y = mlbook.langPOST.to_numpy()
    assert np.mean((y - within) ** 2) < 0.85 * np.mean((y - out) ** 2)
    # a new school gets f(X) alone; a known one its correction
    new_groups = mlbook.schoolnr.astype(str).to_numpy()
    new_groups[:5] = "a new school"
    mixed = m.predict(X, groups=new_groups, Z=mlbook[["IQ_verb"]])
    np.testing.assert_allclose(mixed[:5], out[:5])
    np.testing.assert_allclose(mixed[5:], within[5:])
    # the formula interface predicts a DataFrame of the formula's variables
    mf = lmmpy.MixedML.from_formula(
        "langPOST ~ IQ_verb + ses + sch_iqv + (IQ_verb | schoolnr)", mlbook, estimator=LinearRegression()
    )
    np.testing.assert_allclose(mf.predict(mlbook), within, atol=1e-6)
    np.testing.assert_allclose(mf.predict(mlbook, groups=False), out, atol=1e-6)


def test_callable_fixed_part_and_warm_start(mlbook):
    X = mlbook[["IQ_verb", "ses"]]
    calls = []

    def ols(X, target):
        calls.append(1)
        return LinearRegression().fit(X, target)

    m = lmmpy.MixedML(ols).fit(X, mlbook.langPOST, groups=mlbook.schoolnr)
    assert len(calls) == m.n_iter_ + 1  # one initial fit, one per iteration
    ref = lmmpy.MixedML(LinearRegression()).fit(X, mlbook.langPOST, groups=mlbook.schoolnr)
    np.testing.assert_allclose(m.predict(X), ref.predict(X), atol=1e-8)

    # a callable returning bare predictions fits, but cannot predict new data
    m2 = lmmpy.MixedML(lambda X, t: LinearRegression().fit(X, t).predict(X)).fit(
        X, mlbook.langPOST, groups=mlbook.schoolnr
    )
    assert m2.sigma_ == pytest.approx(ref.sigma_, rel=1e-8)
    with pytest.raises(lmmpy.LmmError, match="returned predictions only"):
        m2.predict(X)

    # a pre-trained estimator is copied (the caller's is untouched) and keeps its state:
    # each iteration continues from the last (what warm_start needs)
    class Counting(LinearRegression):
        def fit(self, X, y):
            self.n_fits_ = getattr(self, "n_fits_", 0) + 1
            return super().fit(X, y)

    pre = Counting().fit(X, mlbook.langPOST)
    pre.fit(X, mlbook.langPOST)
    m3 = lmmpy.MixedML(pre).fit(X, mlbook.langPOST, groups=mlbook.schoolnr)
    assert pre.n_fits_ == 2
    assert m3.estimator_ is not pre and m3.estimator_.n_fits_ == 2 + m3.n_iter_ + 1


def test_statsmodels_backend(mlbook):
    X = mlbook[["IQ_verb"]]
    fit = lmmpy.lmer("langPOST ~ IQ_verb + (1 | schoolnr)", mlbook)
    m = lmmpy.MixedML(method="oob", oob_backend="statsmodels").fit(X, mlbook.langPOST, groups=mlbook.schoolnr)
    np.testing.assert_allclose(m.varcorr_.vcov.to_numpy(), fit.varcorr.vcov.to_numpy(), rtol=1e-2)
    with pytest.raises(lmmpy.LmmError, match="one grouping factor"):
        lmmpy.MixedML(method="oob", oob_backend="statsmodels").fit(
            X, mlbook.langPOST, groups=mlbook[["schoolnr", "denomina"]]
        )


def test_summary_and_attributes(sleep):
    m = lmmpy.MixedML().fit(sleep[["Days"]], sleep.Reaction, groups=sleep.Subject, Z=sleep[["Days"]])
    text = str(m.summary())
    assert "REML-EM" in text and "(1 + Days | Subject)" in text
    assert "Subject  (Intercept)" in text and "Number of obs: 180, groups:  Subject, 18" in text
    assert len(m.gll_trace_) >= 2 and m.n_iter_ >= len(m.gll_trace_)
    assert list(m.ranef_["Subject"].columns) == ["(Intercept)", "Days"]


def test_bad_input(sleep):
    X, y = sleep[["Days"]], sleep.Reaction
    with pytest.raises(lmmpy.LmmError, match="method must be"):
        lmmpy.MixedML(method="bayes").fit(X, y, groups=sleep.Subject)
    with pytest.raises(lmmpy.DataError, match="groups has 10 rows"):
        lmmpy.MixedML().fit(X, y, groups=sleep.Subject[:10])
    with pytest.raises(lmmpy.DataError, match="grouping factor 'group' has only 1 level"):
        lmmpy.MixedML().fit(X, y, groups=np.ones(len(y)))
    with pytest.raises(ValueError, match="infinit"):
        lmmpy.MixedML().fit(X, y.where(y > 250, np.inf), groups=sleep.Subject)
    with pytest.raises(lmmpy.LmmError, match="fit\\(\\) and predict\\(\\)"):
        lmmpy.MixedML(estimator=3).fit(X, y, groups=sleep.Subject)
    before = sleep.copy()
    lmmpy.MixedML.from_formula("Reaction ~ Days + (Days | Subject)", sleep)
    pd.testing.assert_frame_equal(sleep, before)


@pytest.mark.parametrize("estimator", [None, LinearRegression()], ids=["default", "LinearRegression"])
def test_scikit_learn_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(lmmpy.MixedML(estimator), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed
    assert len(results) > 40


def test_verbose_prints_every_step_and_how_it_ended(sleep, capsys):
    X, y, g, Z = sleep[["Days"]], sleep.Reaction, sleep.Subject, sleep[["Days"]]
    lmmpy.MixedML(LinearRegression()).fit(X, y, groups=g, Z=Z)
    assert capsys.readouterr().out == ""  # verbose=0: silent
    m = lmmpy.MixedML(LinearRegression(), verbose=2).fit(X, y, groups=g, Z=Z)
    assert m.get_params()["verbose"] == 2  # stored untouched (scikit-learn's rule)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "mixedML, REML-EM with SQUAREM: f = LinearRegression, random part (1 + Days | Subject), 180 rows; max_iter=100"
    )
    assert lines[1].split() == [
        "step",
        "iter",
        "GLL",
        "GLL",
        "change",
        "param",
        "change",
        "fitted",
        "change",
        "elapsed",
        "random",
        "part",
    ]
    steps = [ln.split() for ln in lines[2:-1]]
    assert [int(s[0]) for s in steps] == list(range(1, len(m.gll_trace_) + 1))
    assert int(steps[-1][1]) == m.n_iter_
    np.testing.assert_allclose([float(s[2]) for s in steps], m.gll_trace_, rtol=1e-8)
    assert len(steps[0]) == 5 and all(len(s) == 8 for s in steps[1:])  # no change at step 1
    assert all(s[-2].endswith("s") and s[-1] in ("EM", "optimum") for s in steps)
    assert steps[-1][-1] == "optimum"  # convergence is checked at the random part's optimum
    assert lines[-1] == f"converged after {m.n_iter_} iterations in {m.fit_seconds_:.1f} s"


def test_verbose_one_prints_ten_steps_then_every_tenth_and_the_last(sleep, capsys):
    """An f that never settles (its predictions jitter by 1e-6, as an f trained to a tolerance
    does) with tol=tol_change=0 runs to max_iter."""
    fits = []

    def jittering(X, target):
        fits.append(1)
        return LinearRegression().fit(X, target).predict(X) + 1e-6 * np.sin(len(fits) + np.arange(len(X)))

    with pytest.warns(lmmpy.ConvergenceWarning):
        m = lmmpy.MixedML(jittering, verbose=True, tol=0, tol_change=0, max_iter=75).fit(
            sleep[["Days"]], sleep.Reaction, groups=sleep.Subject, Z=sleep[["Days"]]
        )
    lines = capsys.readouterr().out.splitlines()
    shown = [int(ln.split()[0]) for ln in lines[2:-1]]
    last = len(m.gll_trace_)
    assert last > 20 and m.n_iter_ == 75
    assert shown == [*range(1, 11), *range(20, last + 1, 10)] + ([last] if last % 10 else [])
    assert lines[-1].startswith("mixedML did not converge in 75 iterations")


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_stopping_at_max_iter_warns_what_did_not_converge(sleep, max_iter):
    """A tiny max_iter: no convergence, a warning that says so and how far it got, and the
    summary says NOT converged.  max_iter=1, and 3 (one SQUAREM cycle), leave one step."""
    with pytest.warns(
        lmmpy.ConvergenceWarning, match=f"did not converge in {max_iter} iterations \\(max_iter={max_iter},"
    ) as caught:
        m = lmmpy.MixedML(LinearRegression(), max_iter=max_iter).fit(
            sleep[["Days"]], sleep.Reaction, groups=sleep.Subject, Z=sleep[["Days"]]
        )
    message = str(caught[0].message)
    if max_iter in (1, 3):
        assert (
            "stopped after one step (an iteration or SQUAREM cycle), with nothing to compare it "
            "with; raise max_iter" in message
        )
    else:
        assert re.search(
            r"(the last step|the move of the random part to its optimum after the last step) "
            r"changed the GLL by [0-9.e-]+ relative \(tol=1e-08\), the random part's "
            r"parameters \(theta, log sigma\^2\) by [0-9.e-]+ and the fitted values by "
            r"[0-9.e-]+ residual SDs \(tol_change=0.0001\); raise max_iter",
            message,
        ), message
    assert not m.converged_ and m.n_iter_ == max_iter
    assert "NOT converged" in str(m.summary())


def test_bad_verbose_and_tolerances():
    for kw, match in [
        (dict(verbose=-1), "verbose must be"),
        (dict(verbose="yes"), "verbose must be"),
        (dict(tol_change=-1.0), "tol_change must be"),
        (dict(tol=float("nan")), "tol must be"),
    ]:
        with pytest.raises(lmmpy.LmmError, match=match):
            lmmpy.MixedML(**kw).fit(np.zeros((4, 1)), np.arange(4.0), groups=[0, 0, 1, 1])


def test_crawling_em_converges_and_reaches_lmer(mlbook):
    """EM alone crawls towards this model's singular optimum (500 iterations before); the moves to
    the random part's optimum get there in a few dozen, at lmer's estimates."""
    f = "langPOST ~ (IQ_verb + ses + sch_iqv + sch_ses)^2 + (IQ_verb + ses | schoolnr)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(f, mlbook)
    m = lmmpy.MixedML.from_formula(f, mlbook, estimator=LinearRegression())
    assert m.converged_ and m.n_iter_ <= 50
    _compare(m, fit, coef_tol=1e-5, vc_rel=1e-3)


def test_flexible_fixed_part_converges_to_the_out_of_the_box_fixed_point(mlbook):
    """A non-linear f (a spline basis): REML-EM converges, to the fixed point the out-of-the-box
    iterations (lmer's REML fit of the residuals each time) reach by another route."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    f = "langPOST ~ IQ_verb + ses + sch_iqv + (IQ_verb | schoolnr)"
    spline = make_pipeline(SplineTransformer(), LinearRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("error", lmmpy.ConvergenceWarning)
        em = lmmpy.MixedML.from_formula(f, mlbook, estimator=spline)
        oob = lmmpy.MixedML.from_formula(f, mlbook, estimator=spline, method="oob", tol_change=1e-7)
    assert em.converged_ and oob.converged_ and em.n_iter_ <= 60
    np.testing.assert_allclose(em.varcorr_.vcov, oob.varcorr_.vcov, rtol=1e-3)
    np.testing.assert_allclose(em.fitted_, oob.fitted_, atol=1e-3 * em.sigma_)
