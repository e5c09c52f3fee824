"""lmmpy.allfit against lme4's summary(allFit(fit)) (tests/reference/toolkit/allfit_*.json, made
by allfit_reference.R beside them).

lme4's optimizers (bobyqa, Nelder-Mead, nlminb, ...) and lmmpy's (L-BFGS-B, BFGS, COBYQA,
Nelder-Mead, Powell, EM) are different algorithms, so they stop at slightly different points of
the same optimum.  The tolerance of each number is therefore taken from R itself: 5 times the
spread of R's own optimizers around its bobyqa value, plus 1e-6 relative (so that a spread of 0,
as on a boundary, still allows rounding).  The log-likelihood of every lmmpy optimizer must be
within 1e-6 of R's (R's optimizers spread up to 2e-7).  The times are not compared.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import lmmpy
from lmmpy.inference.allfit import ALL

REF = Path(__file__).parent.parent / "reference" / "toolkit"
MODELS = {"sleepstudy_slopes_reml": "sleepstudy", "dyestuff2_singular_ml": "Dyestuff2", "pastes_nested_ml": "Pastes"}


def _row(v):
    v = np.asarray(v, dtype=float)
    return v[0] if v.ndim == 2 else v  # R's jsonlite writes a one-row matrix as [[...]]


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request):
    ref = json.loads((REF / f"allfit_{request.param}.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dyestuff2 is singular, as in lme4
        fit = lmmpy.lmer(ref["formula"], lmmpy.datasets.load(MODELS[request.param]), REML=ref["REML"])
    return ref, lmmpy.allfit(fit)


def test_every_optimizer_runs_and_converges(pair):
    ref, res = pair
    assert list(res.which_ok.index) == ALL
    assert res.which_ok.all() and res.converged.all(), res.msgs
    assert all(ref["which_ok"].values())


def test_log_likelihoods_match_lme4(pair):
    ref, res = pair
    np.testing.assert_allclose(res.llik.to_numpy(), ref["llik"]["bobyqa"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("what", ["fixef", "sdcor", "theta"])
def test_estimates_match_lme4_within_its_optimizers_spread(pair, what):
    ref, res = pair
    if what == "fixef":
        # a one-column fixef matrix loses its names in R: then the values are in order
        r = np.array([[v[c] for c in res.fixef.columns] if isinstance(v, dict) else v for v in ref["fixef"].values()])
    else:
        r = np.array([_row(v) for v in ref[what].values()])
    best = r[list(ref[what]).index("bobyqa")]
    tol = 5 * np.abs(r - best).max(axis=0) + 1e-6 * (1 + np.abs(best))
    ours = getattr(res, what).to_numpy()
    assert ours.shape == (len(ALL), best.size)
    assert np.all(np.abs(ours - best) <= tol), (ours - best, tol)


def test_table_and_printing(pair):
    ref, res = pair
    frame = res.to_frame()
    assert list(frame.index) == ALL
    assert {"which.OK", "converged", "llik", "seconds", "feval", "msgs"} <= set(frame.columns)
    assert list(res.sdcor.columns)[-1] == "sigma" and (frame["feval"] > 0).all()
    text = str(res)
    for section in ("$which.OK", "$fixef", "$llik", "$sdcor", "$theta", "$times", "$feval"):
        assert section in text
    assert f"{ref['llik']['bobyqa']:.7g}" in text  # llik printed at 7 digits, as R prints it


def test_sdcor_is_lme4s_varcorr_order():
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    res = lmmpy.allfit(fit, optimizers=["l-bfgs-b"])
    assert list(res.sdcor.columns) == [
        "sd_(Intercept)|Subject",
        "sd_Days|Subject",
        "cor_Days.(Intercept)|Subject",
        "sigma",
    ]
    assert list(res.which_ok.index) == ["L-BFGS-B"]


def test_bad_input():
    fit = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy"))
    with pytest.raises(lmmpy.LmmError, match="unknown optimizer 'bobyqa'"):
        lmmpy.allfit(fit, optimizers=["bobyqa"])
    with pytest.raises(lmmpy.LmmError, match="names no optimizer"):
        lmmpy.allfit(fit, optimizers=[])
    with pytest.raises(lmmpy.LmmError, match="refits a model fitted by lmer"):
        lmmpy.allfit("not a fit")
