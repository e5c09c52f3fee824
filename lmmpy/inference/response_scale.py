r"""Marginal means of a GLMM back-transformed to the response scale, as emmeans'
``type = "response"`` does.

With a mean eta-hat on the link scale, its SE s and the interval (l, u) computed there:

    response = g^{-1}(eta-hat),   SE = |d mu / d eta| (eta-hat) * s   (the delta method),
    interval = (g^{-1}(l), g^{-1}(u))   (ends swapped when g^{-1} decreases).

df are unchanged.  The family is anything with R's ``linkinv`` and ``mu_eta`` (the inverse link
and its derivative) and ``family`` (its name); the column is named as emmeans names it:
``prob`` (binomial), ``rate`` (poisson), else ``response``.
"""

from __future__ import annotations

import numpy as np

RESPONSE_NAMES = {"binomial": "prob", "quasibinomial": "prob", "poisson": "rate", "quasipoisson": "rate"}


def response_name(family_name: str) -> str:
    return RESPONSE_NAMES.get(str(family_name).lower(), "response")


def back_transform(est, se, lower, upper, linkinv, mu_eta) -> tuple:
    """(response, SE, lower, upper) on the response scale from the link scale's."""
    est, se = np.asarray(est, float), np.asarray(se, float)
    lo, hi = linkinv(np.asarray(lower, float)), linkinv(np.asarray(upper, float))
    return linkinv(est), np.abs(mu_eta(est)) * se, np.minimum(lo, hi), np.maximum(lo, hi)
