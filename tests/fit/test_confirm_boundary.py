"""How the "auto" optimizer confirms an optimum on a bound (LmerControl.confirm_boundary)."""

import numpy as np
import pytest

import lmmpy
from lmmpy.errors import LmmError
from lmmpy.fit.deviance import LmmModel
from lmmpy.fit.driver import optimize_lmer


@pytest.fixture(scope="module")
def sleep_fit():
    return lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))


def refit_model(fit, y):
    model = LmmModel(fit.design, REML=True, cross_products=fit.model.cross_products.with_own_response())
    return model.set_response(y)


def test_gradient_confirmation_finds_the_interior_optimum_a_refit_from_the_fit_misses(sleep_fit):
    # Simulation 97 of seed 1: L-BFGS-B from the fitted theta stops on theta_1 = 0 (criterion
    # 1752.790), and so does a second run from that optimum nudged off the bound; the interior
    # optimum (1751.473, found by COBYQA and by L-BFGS-B from lme4's start) is 1.3 lower.  The
    # "gradient" confirmation must find it too (it did not before it also ran from lme4's start).
    y = sleep_fit.simulate(97, seed=1).to_numpy()[:, 96]
    model = refit_model(sleep_fit, y)
    by = {
        mode: optimize_lmer(model, start=sleep_fit.theta, control={"check_conv": False, "confirm_boundary": mode})
        for mode in ("gradient", "cobyqa")
    }
    assert by["cobyqa"].fmin < 1751.48
    assert by["gradient"].fmin == pytest.approx(by["cobyqa"].fmin, abs=1e-6)
    assert np.allclose(by["gradient"].theta, by["cobyqa"].theta, atol=1e-4)


def test_bootstrap_refits_agree_with_cobyqa_confirmation(sleep_fit):
    # the bootstrap's cheaper confirmation changes no draw beyond the optimizers' tolerance
    from lmmpy.inference.simulate import ParameterRefitter

    sims = sleep_fit.simulate(120, seed=1).to_numpy().T
    draws = {
        mode: np.array(
            [ParameterRefitter(sleep_fit, control={"check_conv": False, "confirm_boundary": mode})(y) for y in sims]
        )
        for mode in ("gradient", "cobyqa")
    }
    assert not np.isnan(draws["gradient"]).any()
    np.testing.assert_allclose(draws["gradient"], draws["cobyqa"], rtol=1e-4, atol=1e-4)


def test_unknown_confirmation_is_a_clear_error(sleep_fit):
    with pytest.raises(LmmError, match="confirm_boundary must be one of"):
        optimize_lmer(refit_model(sleep_fit, sleep_fit.design.y), control={"confirm_boundary": "bobyqa"})
