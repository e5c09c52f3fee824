"""A fit and its model are freed as soon as the last reference goes, without waiting for the
cyclic garbage collector: a bootstrap or a simulation study makes thousands of fits, and
models kept alive by reference cycles made the InstEval benchmark's peak memory grow from
360 MB to 645 MB over five fits."""

import gc
import pickle
import weakref

import lmmpy


def test_a_dropped_fit_frees_its_model_at_once():
    data = lmmpy.datasets.load("sleepstudy")
    gc.collect()
    gc.disable()
    try:
        fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", data)
        twin = fit.model.with_reml(False)  # a twin shares the cross-products
        assert twin.REML is False and fit.model.with_reml(False) is twin
        model, design = weakref.ref(fit.model), weakref.ref(fit.design)
        del fit, twin
        assert model() is None and design() is None
    finally:
        gc.enable()


def test_a_fit_pickles_for_the_workers_that_refit_it():
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    fit.model.with_reml(False)
    copy = pickle.loads(pickle.dumps(fit))
    assert copy.objective == fit.objective
    twin = copy.model.with_reml(False)
    assert twin.REML is False and copy.model.with_reml(False) is twin and copy.model.with_reml(True) is copy.model


def test_twins_know_each_other():
    """A with_reml twin finds its original again (one shared list; copy.copy goes through
    __setstate__, which starts a list of its own), so set_response on either forgets both's factors."""
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    ml = fit.model.with_reml(False)
    assert ml.with_reml(True) is fit.model
    assert {id(m) for m in ml._live_variants()} == {id(fit.model), id(ml)}
