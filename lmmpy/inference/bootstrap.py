"""The parametric bootstrap: responses simulated from a fit, each refitted; percentile intervals.

The refits run through ``fit.simulate`` and ``fit.refit`` (methods of the fit the API layer
builds), so this module needs nothing above the inference layer.  :func:`map_refits` is the
loop every bootstrap shares (this one, :func:`lmmpy.pbmodcomp`'s): chunks of simulated
responses, serially or in ``n_jobs`` forked workers, with a progress line.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import require_bool, require_count, require_level
from .parameters import parameter_vector, ran_par_names
from .progress import Progress
from .simulate import ParameterRefitter

CHUNK = 25  # responses per task of a worker, and per update of the progress line
# a refit of a simulated response: no convergence checks (their findings are not reported;
# a failed refit is still caught), and an optimum on a bound confirmed by the gradient method
# from two starts rather than by COBYQA, which costs ~100 x as much on a small model and would
# take most of a bootstrap's time (its simulations often have a variance at zero)
REFIT_CONTROL = {"check_conv": False, "confirm_boundary": "gradient"}


# the per-response work of the running map_refits, for its forked workers: they inherit it
# when the pool forks, so the fit is never pickled (it holds weak references, which cannot be)
_WORK: Callable[[np.ndarray], Any] | None = None


def _run_chunk(ys) -> list:
    work = _WORK
    assert work is not None, "map_refits sets the work before its pool forks"
    return [work(y) for y in ys]


def map_refits(
    per_response: Callable[[np.ndarray], Any],
    responses: np.ndarray,
    fit,
    n_jobs: int = 1,
    progress=None,
    label: str = "bootstrap",
) -> list:
    """``per_response(y)`` (a statistic, or a vector of them) for each row ``y`` of
    ``responses`` (nsim x n), in order.

    With ``n_jobs > 1`` the work runs in forked worker processes, which inherit
    ``per_response`` (nothing but the responses and the results is pickled); ``fit`` sizes
    the BLAS threads of the serial run.  The refits' warnings are silenced: a bootstrap
    reports its failed refits as a count."""
    global _WORK
    chunks = [responses[i : i + CHUNK] for i in range(0, len(responses), CHUNK)]
    from ..linalg.threads import blas_threads_for_fit, dense_tail_order, single_blas_thread

    rows = []
    bar = Progress(label, len(responses), "refits", on=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_jobs > 1:
            import multiprocessing as mp

            _WORK = per_response
            try:
                # one BLAS thread in each worker: the workers are the parallelism
                with mp.get_context("fork").Pool(n_jobs, initializer=single_blas_thread) as pool:
                    for part in pool.imap(_run_chunk, chunks):
                        rows += part
                        bar.update(len(rows))
            finally:
                _WORK = None
        else:
            # the BLAS threads decided once for all the refits, not once per refit
            with blas_threads_for_fit(dense_tail_order(fit.model.sizes, fit.model.p)):
                for c in chunks:
                    rows += [per_response(y) for y in c]
                    bar.update(len(rows))
    bar.close()
    return rows


def bootstrap(fit, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None) -> pd.DataFrame:
    """Parametric bootstrap: ``nsim`` responses simulated from the fit, each refitted (from the
    fit's theta); one row of parameters (lme4's names) per simulation.  ``progress``: one
    updating line on stderr (None: if the refits will take more than a few seconds)."""
    nsim, n_jobs = require_count("nsim", nsim), require_count("n_jobs", n_jobs)
    progress = None if progress is None else require_bool("progress", progress)  # None: by the time it takes
    sims = fit.simulate(nsim, seed=seed).to_numpy().T
    rows = map_refits(ParameterRefitter(fit, control=REFIT_CONTROL), sims, fit, n_jobs=n_jobs, progress=progress)
    return pd.DataFrame(rows, columns=parameter_vector(fit).index)


def confint_boot(
    fit, level: float = 0.95, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None, old_names: bool = True
) -> pd.DataFrame:
    """Percentile intervals from the parametric bootstrap; names as :func:`ran_par_names`."""
    level = require_level(level)
    draws = bootstrap(fit, nsim, seed, n_jobs, progress)
    return percentile_intervals(draws, level, ran_par_names(fit, old_names=old_names) + list(fit.fixef.index))


def percentile_intervals(draws: pd.DataFrame, level: float, names: list) -> pd.DataFrame:
    """The (1 -/+ level) / 2 quantiles of each column of the bootstrap ``draws`` (a row per
    refit, NaN for a failed one, counted in ``attrs["failed_refits"]``), rows named ``names``."""
    a = (1 - level) / 2
    out = draws.quantile([a, 1 - a]).T
    out.index = names
    out.columns = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
    out.attrs["failed_refits"] = int(draws.isna().any(axis=1).sum())
    return out
