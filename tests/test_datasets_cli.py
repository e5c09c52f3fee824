"""Bundled data sets and the command line."""

import subprocess
import sys

import pandas as pd
import pytest

import lmmpy
from lmmpy import LmmError
from lmmpy.cli import main


@pytest.mark.parametrize(
    "name, shape, factors",
    [
        ("sleepstudy", (180, 3), ["Subject"]),
        ("Dyestuff", (30, 2), ["Batch"]),
        ("Dyestuff2", (30, 2), ["Batch"]),
        ("Penicillin", (144, 3), ["plate", "sample"]),
        ("Pastes", (60, 4), ["batch", "cask", "sample"]),
        ("mlbook2", (3758, 11), ["schoolnr"]),
        ("InstEval", (73421, 7), ["s", "d", "dept", "service"]),
    ],
)
def test_load(name, shape, factors):
    d = lmmpy.datasets.load(name)
    assert d.shape == shape
    for f in factors:
        assert isinstance(d[f].dtype, pd.CategoricalDtype)


def test_load_is_case_insensitive_and_unknown_names_fail_clearly():
    assert lmmpy.datasets.load("SLEEPSTUDY").shape == (180, 3)
    with pytest.raises(LmmError, match="no bundled data set 'nope'"):
        lmmpy.datasets.load("nope")


def test_cli_prints_lme4_summary(capsys):
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Linear mixed model fit by REML ['lmerMod']")
    assert "   Data: sleepstudy" in out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Days          10.467      1.546   6.771" in out


def test_cli_ml_and_factor_and_csv(tmp_path, capsys):
    csv = tmp_path / "mydata.csv"
    lmmpy.datasets.load("mlbook2").to_csv(csv, index=False)
    assert main(["fit", "langPOST ~ 1 + (1 | schoolnr)", "--data", str(csv), "--ml", "--factor", "schoolnr"]) == 0
    out = capsys.readouterr().out
    assert "maximum likelihood" in out and "26595.3" in out and "Data: mydata" in out


def test_cli_errors_are_one_line(capsys):
    assert main(["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", "sleepstudy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmmpy: error: unknown column 'Dayz'") and "Traceback" not in err


def test_console_script_runs():
    r = subprocess.run(
        [sys.executable, "-m", "lmmpy.cli", "fit", "Yield ~ 1 + (1 | Batch)", "--data", "Dyestuff"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert " Batch    (Intercept) 1764     42.00   " in r.stdout.splitlines()
