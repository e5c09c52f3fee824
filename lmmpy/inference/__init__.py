"""Inference on a fitted model: tests, intervals, degrees of freedom, prediction and refits.

These modules read a :class:`lmmpy.results.model.FittedLmm` and never import the API layer;
the methods users call (``fit.confint()``, ``fit.anova()``, ...) are attached above them, in
:mod:`lmmpy.lmerfit`.
"""
