"""Plots render (Agg backend, to PNG) and draw what they say they draw."""

import io

import numpy as np
import pytest

import lmmpy

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lmmpy import plot  # noqa: E402


@pytest.fixture(scope="module")
def fit():
    return lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))


def _render(ax):
    buf = io.BytesIO()
    np.atleast_1d(ax)[0].figure.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buf.getvalue()) > 2000
    plt.close("all")


def test_caterpillar_draws_the_sorted_modes_with_intervals(fit):
    ax = plot.caterpillar(fit, "Subject", "Days")
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, np.sort(fit.ranef["Subject"]["Days"].to_numpy()))
    np.testing.assert_array_equal(y, np.arange(18))
    segs = ax.collections[0].get_segments()  # the error bars: +- 1.96 conditional SD
    half = np.array([abs(s[1, 0] - s[0, 0]) / 2 for s in segs])
    sd = fit.ranef_sd["Subject"]["Days"].to_numpy()[np.argsort(fit.ranef["Subject"]["Days"].to_numpy())]
    np.testing.assert_allclose(half, 1.959964 * sd, rtol=1e-5)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == str(fit.ranef["Subject"]["Days"].idxmin())
    _render(ax)


def test_qq_and_residual_plots(fit):
    ax = plot.qq(fit)
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, np.sort(fit.residuals("pearson", scaled=True).to_numpy()))
    assert np.all(np.diff(x) > 0) and abs(x.mean()) < 1e-12
    _render(ax)
    ax = plot.qq(fit, "ranef", "Subject", "(Intercept)")
    assert len(ax.lines[0].get_xdata()) == 18
    _render(ax)
    ax = plot.residuals(fit)
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, fit.fitted.to_numpy())
    np.testing.assert_allclose(y, fit.residuals().to_numpy())
    _render(ax)
    with pytest.raises(lmmpy.LmmError, match="no random effect"):
        plot.caterpillar(fit, "Subject", "Weeks")


def test_shrinkage_pulls_own_estimates_towards_the_fixed_effects(fit):
    ax = plot.shrinkage(fit)
    own = np.column_stack(ax.lines[0].get_data())
    mixed = np.column_stack(ax.lines[1].get_data())
    assert own.shape == mixed.shape == (18, 2)
    beta = fit.fixef.to_numpy()
    # each subject's own regression, recomputed here
    d = lmmpy.datasets.load("sleepstudy")
    first = d[d.Subject == d.Subject.iloc[0]]
    np.testing.assert_allclose(own[0], np.polyfit(first.Days, first.Reaction, 1)[::-1], rtol=1e-8)
    # the model's estimates lie closer to the fixed effects on the whole
    assert np.linalg.norm(mixed - beta, axis=1).sum() < np.linalg.norm(own - beta, axis=1).sum()
    assert len(ax.texts) == 18  # one arrow per subject
    _render(ax)


def test_profile_plot():
    f = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff"))
    prof = f.profile(old_names=False)
    axes = plot.profile(f, prof)
    assert len(axes) == 3
    assert [a.get_xlabel() for a in axes] == ["sd_(Intercept)|Batch", "sigma", "(Intercept)"]
    x, y = axes[1].lines[0].get_data()
    part = prof[prof[".par"] == "sigma"]
    np.testing.assert_allclose(x, part["value"].to_numpy())
    np.testing.assert_allclose(y, part["zeta"].to_numpy())
    _render(axes)


def test_plot_is_reachable_after_import_lmmpy_without_importing_matplotlib():
    """README: ``import lmmpy; lmmpy.plot.caterpillar(fit)``; matplotlib stays optional, so importing
    lmmpy must not import it (a fresh interpreter, as a user's script)."""
    import subprocess
    import sys

    code = (
        "import sys, lmmpy\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import matplotlib; matplotlib.use('Agg')\n"
        "fit = lmmpy.lmer('Reaction ~ Days + (Days | Subject)', lmmpy.datasets.load('sleepstudy'))\n"
        "ax = lmmpy.plot.caterpillar(fit, 'Subject', 'Days')\n"
        "assert len(ax.lines[0].get_data()[0]) == 18\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_is_written_once_in_pyproject():
    import pathlib
    import re

    pyproject = (pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert lmmpy.__version__ == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
