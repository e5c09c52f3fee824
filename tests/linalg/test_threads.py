"""The BLAS thread policy (lmmpy/linalg/threads.py): its decisions, the user's own limits
respected, and that fits (and the bootstrap's n_jobs workers) really run under the limit --
seen from inside the criterion with threadpoolctl (the test's own controller), not through lmmpy.
No timings: what the policy buys is measured by bench/contention.py."""

import math
import os
import warnings

import numpy as np
import pytest
import threadpoolctl
from threadpoolctl import threadpool_limits

import lmmpy
from lmmpy.fit.deviance import LmmModel
from lmmpy.fit.dense_criterion import DenseCriterion
from lmmpy.linalg import threads
from lmmpy.inference.bootstrap import bootstrap

from conftest import model_data, reference, spec

SLOPES = "sleepstudy_slopes_reml"  # Reaction ~ Days + (Days | Subject), REML
TWO_CORES = pytest.mark.skipif(len(threads.usable_cpus()) < 2, reason="needs two cores")


_BLAS = threadpoolctl.ThreadpoolController().select(user_api="blas")  # the test's own, not lmmpy's


def blas_threads_now():
    """The BLAS libraries' thread counts, asked of threadpoolctl."""
    return sorted({lib.get_num_threads() for lib in _BLAS.lib_controllers})


@pytest.fixture
def seen(monkeypatch):
    """Records the BLAS thread counts inside the criterion, at every evaluation (of the blocked
    factor, or of the dense one a small model's optimizer and checks use)."""
    record = []

    def recording(evaluate):
        def evaluate_recorded(self, theta):
            record.append(blas_threads_now())
            return evaluate(self, theta)

        return evaluate_recorded

    for cls, name in ((LmmModel, "__call__"), (DenseCriterion, "__call__"), (DenseCriterion, "value_and_gradient")):
        monkeypatch.setattr(cls, name, recording(getattr(cls, name)))
    return record


@pytest.fixture
def no_user_env(monkeypatch):
    for name in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def as_large(monkeypatch, no_user_env):
    """Every model counts as large, on 64 idle cores: only the user's limits can hold the
    threads down (decisions, not speed, are tested here)."""
    monkeypatch.setattr(threads, "MULTITHREAD_MIN_ORDER", 0)
    monkeypatch.setattr(threads, "usable_cores", lambda cpus=None: 64)
    monkeypatch.setattr(threads, "idle_cores", lambda cpus=None, seconds=0: 64.0)


def fit_slopes(**control):
    s = spec(SLOPES)
    return lmmpy.lmer(s["formula"], model_data(SLOPES), REML=True, control=control or None)


def assert_lme4_fit(fit):
    """The fit reaches lme4's optimum whatever the threads (REML criterion within 1e-6)."""
    assert fit.objective == pytest.approx(reference(SLOPES)["REMLcrit"], abs=1e-6)


# -- the decision ---------------------------------------------------------------------------


def test_small_model_gets_one_thread_whatever_is_idle():
    sleepstudy = threads.dense_tail_order([(18, 2)], p=2)  # one term: the tail is X and y
    assert sleepstudy == 3
    for cores in (1, 2, 8, 64):
        assert threads.decide_blas_threads(sleepstudy, cores=cores, idle=cores) == 1
    assert threads.decide_blas_threads(threads.MULTITHREAD_MIN_ORDER - 1, cores=64, idle=64) == 1


def test_large_model_threads_follow_the_idle_cores():
    insteval = threads.dense_tail_order([(2972, 1), (1128, 1), (14, 1)], p=2)  # (1|s)+(1|d)+(1|dept)
    assert insteval == 1128 + 14 + 2 + 1
    assert threads.decide_blas_threads(insteval, cores=2, idle=2.0) == 2  # quiet
    assert threads.decide_blas_threads(insteval, cores=2, idle=1.0) == 1  # one core busy elsewhere
    assert threads.decide_blas_threads(insteval, cores=2, idle=1.5) == 1  # never more than idle
    assert threads.decide_blas_threads(insteval, cores=2, idle=0.0) == 1  # at least one
    assert threads.decide_blas_threads(insteval, cores=8, idle=5.7) == 5
    assert threads.decide_blas_threads(insteval, cores=2, idle=None) == 1  # load unknown


def test_never_more_than_the_cores_the_idle_cores_or_the_cap():
    for cores in (1, 2, 3, 8):
        for idle in np.linspace(0, 2 * cores, 13):
            for cap in (None, 1, 2, 4):
                n = threads.decide_blas_threads(10_000, cores=cores, idle=idle, cap=cap)
                assert 1 <= n <= cores
                assert n <= max(1, math.floor(idle + 1e-9))
                assert cap is None or n <= cap


def test_usable_cores_at_most_the_affinity():
    cpus = threads.usable_cpus()
    assert 1 <= threads.usable_cores(cpus) <= len(cpus)
    assert threads.usable_cores([cpus[0]]) == 1
    if hasattr(os, "sched_getaffinity"):
        assert set(cpus) == os.sched_getaffinity(0)


def test_idle_cores_is_within_the_cores_given():
    cpus = threads.usable_cpus()
    idle = threads.idle_cores(cpus, seconds=0.01)
    assert idle is None or 0.0 <= idle <= len(cpus)


# -- the user's own limits ------------------------------------------------------------------


def test_env_limits_read(monkeypatch, no_user_env):
    assert threads.env_thread_limit() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")  # nested OpenMP levels: the outer one
    assert threads.env_thread_limit() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.env_thread_limit() == 1
    assert threads.env_thread_limit({"MKL_NUM_THREADS": "junk", "BLIS_NUM_THREADS": "0"}) is None


def test_users_env_limit_is_not_raised(monkeypatch, as_large):
    assert threads.choose_blas_threads(10_000) == min(64, *blas_threads_now())  # the cap alone binds
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.user_thread_cap() == 1
    assert threads.choose_blas_threads(10_000) == 1


@TWO_CORES
def test_users_threadpool_limits_is_not_raised(as_large, seen):
    with threadpool_limits(1, user_api="blas"):
        assert threads.choose_blas_threads(10_000) == 1
        fit = fit_slopes()
        assert blas_threads_now() == [1]  # left as the user set it
    assert seen and all(s == [1] for s in seen)
    assert fit.optsum.blas_threads == 1
    assert_lme4_fit(fit)


def test_blas_threads_request_checked():
    for bad in (0, -1, 1.5, True, "two", "INHERIT"):
        with pytest.raises(lmmpy.LmmError, match="blas_threads"):
            fit_slopes(blas_threads=bad)


# -- the fit runs under the limit -----------------------------------------------------------


@TWO_CORES
def test_small_fit_runs_on_one_thread_and_restores(seen):
    with threadpool_limits(2, user_api="blas"):  # what OpenBLAS starts with on two cores
        fit = fit_slopes()
        assert blas_threads_now() == [2]  # restored after the fit
    assert len(seen) > 3 and all(s == [1] for s in seen)
    assert fit.optsum.blas_threads == 1
    assert_lme4_fit(fit)


@TWO_CORES
def test_large_fit_on_idle_cores_uses_them(as_large, seen):
    with threadpool_limits(2, user_api="blas"):
        fit = fit_slopes()
    assert seen and all(s == [2] for s in seen)  # min(cap 2, 64 cores, 64 idle)
    assert_lme4_fit(fit)


@TWO_CORES
def test_large_fit_beside_a_busy_core_uses_one(monkeypatch, as_large, seen):
    monkeypatch.setattr(threads, "usable_cores", lambda cpus=None: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda cpus=None, seconds=0: 1.0)
    with threadpool_limits(2, user_api="blas"):
        fit_slopes()
    assert seen and all(s == [1] for s in seen)


@TWO_CORES
def test_explicit_and_inherit_requests(seen):
    with threadpool_limits(2, user_api="blas"):
        fit = fit_slopes(blas_threads=2)
        assert seen and all(s == [2] for s in seen) and fit.optsum.blas_threads == 2
        seen.clear()
        with threadpool_limits(1, user_api="blas"):
            fit_slopes(blas_threads="inherit")
        assert seen and all(s == [1] for s in seen)
        seen.clear()
        fit_slopes(blas_threads="inherit")  # the old behaviour: BLAS as the process has it
        assert seen and all(s == [2] for s in seen)
    assert_lme4_fit(fit)


@TWO_CORES
def test_limit_restored_after_an_error():
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(lmmpy.LmmError):
            lmmpy.lmer("Reaction ~ Days + (Days | nosuchcolumn)", model_data(SLOPES))
        assert blas_threads_now() == [2]
        assert threads._holder is None
        fit_slopes()  # and the next fit sets its limit again
        assert blas_threads_now() == [2]


@TWO_CORES
def test_nested_fit_changes_nothing(seen):
    with threadpool_limits(2, user_api="blas"):
        with threads.blas_threads_for_fit(0) as outer:
            assert outer == 1 and blas_threads_now() == [1]
            fit_slopes(blas_threads=2)  # inside another fit's limit: runs under it
            assert blas_threads_now() == [1]
        assert blas_threads_now() == [2]
    assert seen and all(s == [1] for s in seen)


@TWO_CORES
def test_refit_runs_under_the_limit(seen):
    fit = fit_slopes()
    seen.clear()
    with threadpool_limits(2, user_api="blas"):
        again = fit.refit(fit.design.y)
    assert seen and all(s == [1] for s in seen)
    assert again.objective == pytest.approx(fit.objective, abs=1e-8)


@TWO_CORES
def test_bootstrap_workers_use_one_thread(tmp_path, monkeypatch):
    """Each n_jobs worker (a forked process) writes the thread counts it sees inside the
    criterion; on two cores they would inherit OpenBLAS's two threads without the policy."""
    criterion = LmmModel.__call__

    def recording(self, theta):
        with open(tmp_path / f"{os.getpid()}.txt", "a") as f:
            f.write(f"{threads.current_blas_threads()} {blas_threads_now()}\n")  # lmmpy's view and threadpoolctl's
        return criterion(self, theta)

    s = spec("sleepstudy_intercept_reml")
    fit = lmmpy.lmer(s["formula"], model_data("sleepstudy_intercept_reml"))
    # the parent's BLAS as large as it can be, and every model counted large: a worker that
    # used the rule, not its one thread, would take two
    monkeypatch.setattr(threads, "MULTITHREAD_MIN_ORDER", 0)
    monkeypatch.setattr(threads, "idle_cores", lambda cpus=None, seconds=0: 64.0)
    monkeypatch.setattr(LmmModel, "__call__", recording)
    with threadpool_limits(2, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = bootstrap(fit, nsim=50, seed=1, n_jobs=2)
    assert len(draws) == 50 and not draws.isna().any().any()
    files = list(tmp_path.glob("*.txt"))
    assert files and os.getpid() not in {int(f.stem) for f in files}  # the refits ran in workers
    lines = [ln for f in files for ln in f.read_text().splitlines()]
    assert len(lines) >= 50 and all(ln == "1 [1]" for ln in lines)


@TWO_CORES
def test_profile_runs_under_the_limit(seen):
    s = spec("sleepstudy_intercept_reml")
    fit = lmmpy.lmer(s["formula"], model_data("sleepstudy_intercept_reml"))
    seen.clear()
    with threadpool_limits(2, user_api="blas"):
        ci = fit.confint("profile")
        assert blas_threads_now() == [2]
    assert len(seen) > 50 and all(s == [1] for s in seen)
    assert np.isfinite(ci.to_numpy()).all()
