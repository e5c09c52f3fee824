"""The fit layer: criteria of a linear mixed model over theta, their gradient, the optimizers and
the checks at the optimum, and the fit status as data."""
