"""The parametric bootstrap: responses simulated from the fit, each refitted; percentile intervals.

The refits run through ``fit.simulate`` and ``fit.refit`` (methods of the fit the API layer
builds), so this module needs nothing above the inference layer.
"""

from __future__ import annotations

import pandas as pd

from ..errors import require_bool, require_count, require_level
from .parameters import parameter_vector, ran_par_names
from .progress import Progress
from .simulate import refit_parameters


def _boot_worker(args):
    fit, ys = args
    return refit_parameters(fit, ys, control={"check_conv": False})


def bootstrap(fit, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None) -> pd.DataFrame:
    """Parametric bootstrap: ``nsim`` responses simulated from the fit, each refitted (from the
    fit's theta); one row of parameters (lme4's names) per simulation.  ``progress``: one
    updating line on stderr (None: if the refits will take more than a few seconds)."""
    import warnings

    nsim, n_jobs = require_count("nsim", nsim), require_count("n_jobs", n_jobs)
    progress = None if progress is None else require_bool("progress", progress)  # None: by the time it takes
    sims = fit.simulate(nsim, seed=seed).to_numpy().T
    chunks = [sims[i : i + 25] for i in range(0, nsim, 25)]
    from ..linalg.threads import blas_threads_for_fit, dense_tail_order, single_blas_thread

    rows = []
    bar = Progress("bootstrap", nsim, "refits", on=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_jobs > 1:
            import multiprocessing as mp

            # one BLAS thread in each worker: the workers are the parallelism
            with mp.get_context("fork").Pool(n_jobs, initializer=single_blas_thread) as pool:
                for part in pool.imap(_boot_worker, [(fit, c) for c in chunks]):
                    rows += part
                    bar.update(len(rows))
        else:
            # the BLAS threads decided once for all the refits, not once per refit
            with blas_threads_for_fit(dense_tail_order(fit.model.sizes, fit.model.p)):
                for c in chunks:
                    rows += _boot_worker((fit, c))
                    bar.update(len(rows))
    bar.close()
    return pd.DataFrame(rows, columns=parameter_vector(fit).index)


def confint_boot(
    fit, level: float = 0.95, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None, old_names: bool = True
) -> pd.DataFrame:
    """Percentile intervals from the parametric bootstrap; names as :func:`ran_par_names`."""
    level = require_level(level)
    draws = bootstrap(fit, nsim, seed, n_jobs, progress)
    a = (1 - level) / 2
    out = draws.quantile([a, 1 - a]).T
    out.index = ran_par_names(fit, old_names=old_names) + list(fit.fixef.index)
    out.columns = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
    out.attrs["failed_refits"] = int(draws.isna().any(axis=1).sum())
    return out
