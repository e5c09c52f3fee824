r"""Response families and links for :func:`lmmpy.glmer`, made as R's ``stats`` makes them.

A family gives, for the mean mu, the linear predictor eta = g(mu) and prior weights w:

- ``linkfun`` g, ``linkinv`` g^{-1}, ``mu_eta`` d mu / d eta (R's clamps at the tails included,
  so that the working weights stay positive where R's do);
- ``variance`` V(mu): binomial mu (1 - mu), Poisson mu, Gamma mu^2, inverse Gaussian mu^3;
- ``dev_resids(y, mu, wt)``: the squared deviance residuals d_i, with sum d_i the deviance;
- ``aic(y, n, mu, wt, dev)``: -2 log-likelihood of the conditional distribution (R's
  ``family$aic``; ``n`` the binomial trials, ``dev`` the deviance for the dispersion families);
- ``mustart(y, wt)``: R's starting means (``family$initialize``).

Why not ``statsmodels.genmod.families``: its binomial takes trials differently (the
response is not R's proportion with weights = trials), its log-likelihood and deviance
residuals follow other conventions (no ``aic(y, n, mu, wt, dev)`` with R's binomial
rounding, Gamma's dispersion from the deviance), its links do not clamp the tails as R's
``make.link`` does, and its link names are not R's.  lme4's criterion reads exactly R's
``aic`` and R's tail clamps, so matching it to the digit needs R's definitions; each is a
line of vectorised numpy, so owning them costs less than adapting another convention, and it
keeps statsmodels an optional dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special, stats

from .errors import LmmError

EPS = np.finfo(float).eps
LOGIT_THRESH = 30.0  # R's logit linkinv/mu.eta: beyond |eta| = 30, the tails are clamped
PROBIT_THRESH = -stats.norm.ppf(EPS)
CAUCHIT_THRESH = -stats.cauchy.ppf(EPS)


@dataclass(frozen=True)
class Link:
    """A link function g with its inverse and d mu / d eta (R's ``make.link``)."""

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]
    valideta: Callable[[np.ndarray], bool] = lambda eta: True
    # (linkinv, mu_eta) together where they share work, the same numbers as the two apart
    linkinv_mu_eta: Callable[[np.ndarray], tuple] | None = None


def _beyond_logit_thresh(eta) -> bool:
    """Whether any |eta| exceeds R's logit threshold (two reductions: the clamps below are
    skipped, as they change nothing, when none does -- PIRLS's usual case)."""
    return bool(np.size(eta)) and (np.min(eta) < -LOGIT_THRESH or np.max(eta) > LOGIT_THRESH)


def _logit_linkinv(eta):
    e = np.exp(np.clip(eta, -LOGIT_THRESH, LOGIT_THRESH))
    if _beyond_logit_thresh(eta):
        e = np.where(eta < -LOGIT_THRESH, EPS, np.where(eta > LOGIT_THRESH, 1.0 / EPS, e))
    return e / (1.0 + e)


def _logit_mu_eta(eta):
    e = np.exp(np.clip(eta, -LOGIT_THRESH, LOGIT_THRESH))
    d = e / (1.0 + e) ** 2
    return np.where(np.abs(eta) > LOGIT_THRESH, EPS, d) if _beyond_logit_thresh(eta) else d


def _logit_linkinv_mu_eta(eta):
    """(linkinv, mu_eta) at eta, the same numbers as :func:`_logit_linkinv` and
    :func:`_logit_mu_eta` from one exponential (PIRLS needs both at every accepted step)."""
    if _beyond_logit_thresh(eta):
        return _logit_linkinv(eta), _logit_mu_eta(eta)
    e = np.exp(eta)  # |eta| <= the threshold: the clip would change nothing
    one_plus = 1.0 + e
    return e / one_plus, e / one_plus**2


def _cloglog_mu_eta(eta):
    e = np.minimum(eta, 700.0)
    return np.maximum(np.exp(e) * np.exp(-np.exp(e)), EPS)


LINKS = {
    "logit": Link(
        "logit",
        lambda mu: np.log(mu / (1.0 - mu)),
        _logit_linkinv,
        _logit_mu_eta,
        linkinv_mu_eta=_logit_linkinv_mu_eta,
    ),
    "probit": Link(
        "probit",
        stats.norm.ppf,
        lambda eta: stats.norm.cdf(np.clip(eta, -PROBIT_THRESH, PROBIT_THRESH)),
        lambda eta: np.maximum(stats.norm.pdf(eta), EPS),
    ),
    "cauchit": Link(
        "cauchit",
        stats.cauchy.ppf,
        lambda eta: stats.cauchy.cdf(np.clip(eta, -CAUCHIT_THRESH, CAUCHIT_THRESH)),
        lambda eta: np.maximum(stats.cauchy.pdf(eta), EPS),
    ),
    "cloglog": Link(
        "cloglog",
        lambda mu: np.log(-np.log1p(-mu)),
        lambda eta: np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), EPS, 1.0 - EPS),
        _cloglog_mu_eta,
    ),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), EPS), lambda eta: np.maximum(np.exp(eta), EPS)),
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta**2, lambda eta: 2.0 * eta, lambda eta: bool(np.all(eta > 0))),
    "inverse": Link(
        "inverse",
        lambda mu: 1.0 / mu,
        lambda eta: 1.0 / eta,
        lambda eta: -1.0 / eta**2,
        lambda eta: bool(np.all(eta != 0)),
    ),
    "1/mu^2": Link(
        "1/mu^2",
        lambda mu: 1.0 / mu**2,
        lambda eta: 1.0 / np.sqrt(eta),
        lambda eta: -1.0 / (2.0 * eta**1.5),
        lambda eta: bool(np.all(eta > 0)),
    ),
}


def _ylogy(y, mu):
    """y log(y / mu), 0 where y = 0 (R's y_log_y): the same products, two passes over the rows
    (PIRLS's deviance residuals on large data spend a quarter of an iteration here)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return special.xlogy(y, y / mu)


@dataclass(frozen=True)
class Family:
    """An exponential family with its link (R's ``family`` object)."""

    family: str
    link: Link
    variance: Callable[[np.ndarray], np.ndarray]
    dev_resids: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    aic: Callable[..., float]
    mustart: Callable[[np.ndarray, np.ndarray], np.ndarray]
    validmu: Callable[[np.ndarray], bool]
    has_dispersion: bool  # a free scale parameter (Gamma, inverse Gaussian): lme4's sigma

    @property
    def link_name(self) -> str:
        return self.link.name

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        return self.link.linkfun(mu)

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        return self.link.linkinv(eta)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        return self.link.mu_eta(eta)

    def linkinv_mu_eta(self, eta: np.ndarray) -> tuple:
        """(linkinv(eta), mu_eta(eta)), from shared work where the link has it."""
        both = self.link.linkinv_mu_eta
        return both(eta) if both is not None else (self.link.linkinv(eta), self.link.mu_eta(eta))

    def __str__(self) -> str:
        return f"Family: {self.family} (link: {self.link.name})"


def _link(family: str, link: str, allowed) -> Link:
    if not isinstance(link, str) or link not in allowed:
        raise LmmError(f"link {link!r} is not available for the {family} family; available links are {allowed}")
    return LINKS[link]


# -- binomial -------------------------------------------------------------------------------------
def _binomial_dev(y, mu, wt):
    return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))


def binomial_dev_binary(y_is_one, mu, wt):
    """:func:`_binomial_dev` for a response y in {0, 1} (``y_is_one`` its mask) and mu in (0, 1):
    one of the two y log(y / mu) terms is 0 there and the other log(1 / mu) or
    log(1 / (1 - mu)), so these are its numbers to the last bit, from one logarithm."""
    return 2.0 * wt * np.log(1.0 / np.where(y_is_one, mu, 1.0 - mu))


def _binomial_aic(y, n, mu, wt, dev=None) -> float:
    m = n if np.any(n > 1) else wt
    k = np.round(m * y)
    size = np.round(m)
    with np.errstate(divide="ignore", invalid="ignore"):  # dbinom(k, size, mu, log = TRUE)
        ll = (
            special.gammaln(size + 1)
            - special.gammaln(k + 1)
            - special.gammaln(size - k + 1)
            + special.xlogy(k, mu)
            + special.xlog1py(size - k, -mu)
        )
        scale = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
    return float(-2.0 * np.sum(np.where(scale > 0, scale * ll, 0.0)))


def binomial(link: str = "logit") -> Family:
    """The binomial family (R's ``binomial()``): y a proportion of ``n`` trials, V = mu (1 - mu)."""
    return Family(
        "binomial",
        _link("binomial", link, ("logit", "probit", "cauchit", "log", "cloglog")),
        lambda mu: mu * (1.0 - mu),
        _binomial_dev,
        _binomial_aic,
        lambda y, wt: (wt * y + 0.5) / (wt + 1.0),
        lambda mu: bool(np.all((mu > 0) & (mu < 1))),
        False,
    )


# -- Poisson --------------------------------------------------------------------------------------
def _poisson_dev(y, mu, wt):
    return 2.0 * wt * np.where(y > 0, _ylogy(y, mu) - (y - mu), mu)


def _poisson_aic(y, n, mu, wt, dev=None) -> float:
    ll = special.xlogy(y, mu) - mu - special.gammaln(y + 1)  # dpois(y, mu, log = TRUE)
    return float(-2.0 * np.sum(ll * wt))


def poisson(link: str = "log") -> Family:
    """The Poisson family (R's ``poisson()``): V = mu."""
    return Family(
        "poisson",
        _link("poisson", link, ("log", "identity", "sqrt")),
        lambda mu: mu,
        _poisson_dev,
        _poisson_aic,
        lambda y, wt: y + 0.1,
        lambda mu: bool(np.all(np.isfinite(mu) & (mu > 0))),
        False,
    )


# -- Gamma ----------------------------------------------------------------------------------------
def _gamma_dev(y, mu, wt):
    with np.errstate(divide="ignore"):
        return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)


def _gamma_aic(y, n, mu, wt, dev) -> float:
    disp = dev / np.sum(wt)
    shape = 1.0 / disp
    return float(-2.0 * np.sum(stats.gamma.logpdf(y, shape, scale=mu * disp) * wt) + 2.0)


def Gamma(link: str = "inverse") -> Family:  # noqa: N802 (R's name)
    """The Gamma family (R's ``Gamma()``): V = mu^2, with a dispersion."""
    return Family(
        "Gamma",
        _link("Gamma", link, ("inverse", "identity", "log")),
        lambda mu: mu**2,
        _gamma_dev,
        _gamma_aic,
        lambda y, wt: y,
        lambda mu: bool(np.all(np.isfinite(mu) & (mu > 0))),
        True,
    )


# -- inverse Gaussian -----------------------------------------------------------------------------
def _ig_dev(y, mu, wt):
    return wt * ((y - mu) ** 2) / (y * mu**2)


def _ig_aic(y, n, mu, wt, dev) -> float:
    sw = np.sum(wt)
    return float(sw * (np.log(dev / sw * 2.0 * np.pi) + 1.0) + 3.0 * np.sum(np.log(y) * wt) + 2.0)


def inverse_gaussian(link: str = "1/mu^2") -> Family:
    """The inverse Gaussian family (R's ``inverse.gaussian()``): V = mu^3, with a dispersion."""
    return Family(
        "inverse.gaussian",
        _link("inverse.gaussian", link, ("1/mu^2", "inverse", "identity", "log")),
        lambda mu: mu**3,
        _ig_dev,
        _ig_aic,
        lambda y, wt: y,
        lambda mu: True,
        True,
    )


FAMILIES = {"binomial": binomial, "poisson": poisson, "Gamma": Gamma, "inverse.gaussian": inverse_gaussian}


def as_family(family) -> Family:
    """A Family from a Family, a name ("binomial", "poisson", "Gamma", "inverse.gaussian"; R's
    capitalisation, also "gamma" and "inverse_gaussian"), or a family function."""
    if isinstance(family, Family):
        return family
    if callable(family) and getattr(family, "__name__", None) in ("binomial", "poisson", "Gamma", "inverse_gaussian"):
        return family()
    if isinstance(family, str):
        key = {"gamma": "Gamma", "inverse_gaussian": "inverse.gaussian"}.get(family, family)
        if key in FAMILIES:
            return FAMILIES[key]()
    raise LmmError(
        f"family must be one of {', '.join(map(repr, FAMILIES))} or an lmmpy.families object, not {family!r}"
    )


__all__ = ["Family", "Link", "binomial", "poisson", "Gamma", "inverse_gaussian", "as_family"]
