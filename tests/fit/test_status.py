"""Fit status as data: OptSummary.status and the records behind it, one test per status."""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.optimize import OptSummary
from lmmpy.fit.status import Check, CheckFinding, FitNote, FitStatus, Note
from lmmpy.fit.driver import _check

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return lmmpy.datasets.load("sleepstudy")


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmmpy.lmer(*args, **kwargs)


def test_converged(sleep):
    opt = _quiet_fit(FORMULA, sleep).optsum
    assert opt.status is FitStatus.CONVERGED and not opt.failed and opt.findings == []


def test_boundary():
    opt = _quiet_fit("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff2")).optsum
    assert opt.status is FitStatus.BOUNDARY and not opt.failed
    assert [f.kind for f in opt.findings] == [Check.BOUNDARY] and opt.findings[0].tol == 1e-4


def test_failed_gradient_check(sleep):
    opt = _quiet_fit(FORMULA, sleep, start=[0.5, 0.0, 0.2], optimizer=None).optsum
    assert opt.status is FitStatus.FAILED_GRADIENT_CHECK and opt.failed
    f = opt.findings[0]
    assert f.kind is Check.GRADIENT_TOO_LARGE and f.value > f.tol == 2e-3
    assert str(f) == f"Model failed to converge with max|grad| = {f.value:g} (tol = 0.002, component 1)"


def test_failed_hessian_check():
    opt = OptSummary(
        optimizer="test",
        theta0=np.ones(1),
        lower=np.zeros(1),
        theta=np.ones(1),
        fmin=1.0,
        converged=True,
        findings=[CheckFinding(Check.HESSIAN_NEGATIVE, value=2, tol=1e-6)],
    )
    assert opt.status is FitStatus.FAILED_HESSIAN_CHECK and opt.failed
    assert opt.messages == ["Model failed to converge: degenerate  Hessian with 2 negative eigenvalues"]
    singular = CheckFinding(Check.HESSIAN_SINGULAR, tol=1e-6)  # a warning, not a failure (lme4's)
    opt.findings = [singular]
    assert opt.status is FitStatus.CONVERGED and not singular.fails_fit


def test_nonfinite():
    model = lmmpy.mk_lmer_devfun(lmmpy.lformula("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy")))
    opt = OptSummary(
        optimizer="test",
        theta0=np.ones(1),
        lower=np.zeros(1),
        theta=np.ones(1),
        fmin=np.inf,
        converged=True,
        message="stopped",
    )
    out = _check(model, opt, lmmpy.LmerControl(check_conv=False))
    assert out.status is FitStatus.NONFINITE and out.failed


def test_not_converged(sleep):
    opt = _quiet_fit(
        FORMULA, sleep, optimizer="cobyqa", control={"optimizer_options": {"maxfev": 4}, "fallback_em": False}
    ).optsum
    assert opt.status is FitStatus.NOT_CONVERGED and opt.failed


def test_em_fallback(sleep):
    opt = _quiet_fit(FORMULA, sleep, optimizer="cobyqa", control={"optimizer_options": {"maxfev": 4}}).optsum
    assert opt.status is FitStatus.EM_FALLBACK and not opt.failed
    note = [n for n in opt.fit_notes if n.kind is Note.EM_FALLBACK][0]
    assert note.optimizer == "cobyqa" and note.steps > 0
    assert "refitted by EM" in str(note) and str(note) in opt.notes


def test_optimizer_error(sleep, monkeypatch):
    import lmmpy.fit.optimize as optimize

    def broken(*args, **kwargs):
        raise ValueError("broken on purpose")

    monkeypatch.setattr(optimize, "minimize", broken)
    opt = _quiet_fit(FORMULA, sleep, optimizer="cobyqa", control={"fallback_em": False}).optsum
    assert opt.status is FitStatus.OPTIMIZER_ERROR and opt.failed
    assert opt.message == "the optimizer stopped with an error: broken on purpose"


def test_notes_are_records_printed_as_text():
    assert str(FitNote(Note.RESTART_EDGE)) == "restarted off a zero bound (restart_edge)"
    assert str(FitNote(Note.EM_START, steps=12)) == "started from 12 EM steps"
    note = FitNote(Note.EM_FALLBACK, optimizer="auto:l-bfgs-b", reason="x", steps=7, kept_em=True)
    assert str(note) == "the optimizer (auto:l-bfgs-b) failed (x); refitted by EM (7 steps), then kept EM's estimate"
