# lme4 on sleepstudy with the covariate Days rescaled (issue 12), for tests/test_scaling.py.
# usage: Rscript make_refs.R DATA_DIR OUT_DIR      (DATA_DIR holds sleepstudy.csv)
#
# unscaled.json: lme4's REML fit of Reaction ~ Days + (Days | Subject) on the data as they are,
#   everything the tests transform to the rescaled covariate (criterion, theta, fixef, vcov,
#   VarCorr, sigma, conditional modes and SDs, fitted values, predictions on new data, the
#   Satterthwaite and Kenward-Roger tables, profile intervals, the ML deviance).
# slope_only.json: the same for Reaction ~ Days + (0 + Days | Subject) (criterion, theta,
#   sigma, fixef, profile intervals), a model whose profile is quick to compute.
# rescaled.json: for Days * 1e8 and Days * 1e-8, what lme4 itself does (its error or its
#   criterion and warnings) and the criterion of lme4's own deviance function at the unscaled
#   optimum mapped to the rescaled covariate (theta entries of the Days row divided by the
#   factor): the attainable criterion, = unscaled + 2 log(factor) (REML's log|R_X|^2 term),
#   and lme4's printed summary of the model at that theta.
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(file.path(args[1], "sleepstudy.csv"))
d$Subject <- factor(d$Subject)
f <- Reaction ~ Days + (Days | Subject)
m <- lme4::lmer(f, data = d, REML = TRUE)
vc <- as.data.frame(VarCorr(m))
red <- as.data.frame(ranef(m, condVar = TRUE))
nd <- data.frame(Days = c(0, 2.5, 7, 12), Subject = factor(c("308", "309", "372", "999")))
mt <- lmerTest::lmer(f, data = d, REML = TRUE)
st <- summary(mt)$coefficients
kr <- summary(mt, ddf = "Kenward-Roger")$coefficients
ci <- suppressWarnings(confint(m, method = "profile", oldNames = FALSE))
ml <- update(m, REML = FALSE)
unscaled <- list(
  formula = deparse(f), REML = TRUE, criterion = unname(REMLcrit(m)),
  theta = unname(getME(m, "theta")), sigma = sigma(m),
  fixef = as.list(fixef(m)),
  vcov_fixef = lapply(seq_len(nrow(vcov(m))), function(i) unname(as.matrix(vcov(m))[i, ])),
  varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
  ranef = list(term = as.character(red$term), level = as.character(red$grp), value = red$condval, cond_sd = red$condsd),
  fitted = unname(fitted(m)),
  newdata = list(Days = nd$Days, Subject = as.character(nd$Subject)),
  predict_full = unname(predict(m, newdata = nd, allow.new.levels = TRUE)),
  predict_fixed_only = unname(predict(m, newdata = nd, re.form = NA)),
  satterthwaite = list(term = rownames(st), estimate = unname(st[, "Estimate"]), se = unname(st[, "Std. Error"]),
                       df = unname(st[, "df"]), t = unname(st[, "t value"]), p = unname(st[, "Pr(>|t|)"])),
  kenward_roger = list(term = rownames(kr), estimate = unname(kr[, "Estimate"]), se = unname(kr[, "Std. Error"]),
                       df = unname(kr[, "df"]), t = unname(kr[, "t value"]), p = unname(kr[, "Pr(>|t|)"])),
  confint_profile = list(param = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])),
  ml_deviance = unname(deviance(ml)), ml_theta = unname(getME(ml, "theta")),
  summary_text = paste(capture.output(print(summary(m))), collapse = "\n"),
  lme4_version = as.character(packageVersion("lme4")))
writeLines(toJSON(unscaled, auto_unbox = TRUE, digits = NA, null = "null"), file.path(args[2], "unscaled.json"))

# slope_only.json: Reaction ~ Days + (0 + Days | Subject), whose profile is quick to compute
f0 <- Reaction ~ Days + (0 + Days | Subject)
m0 <- lme4::lmer(f0, data = d, REML = TRUE)
ci0 <- suppressWarnings(confint(m0, method = "profile", oldNames = FALSE))
slope_only <- list(formula = deparse(f0), REML = TRUE, criterion = unname(REMLcrit(m0)),
  theta = unname(getME(m0, "theta")), sigma = sigma(m0), fixef = as.list(fixef(m0)),
  confint_profile = list(param = rownames(ci0), lower = unname(ci0[, 1]), upper = unname(ci0[, 2])))
writeLines(toJSON(slope_only, auto_unbox = TRUE, digits = NA, null = "null"), file.path(args[2], "slope_only.json"))

# the REML criterion at theta by dense linear algebra from lFormula's Z, X, y and Lambda
# pattern (lme4's deviance function cannot be built for Days * 1e8: its initialisation at
# theta = (1, 0, 1) fails with the same "Downdated VtV" error); checked on the unscaled fit
reml_dense <- function(lf, theta) {
  rt <- lf$reTrms
  Lt <- rt$Lambdat
  Lt@x <- theta[rt$Lind]
  ZL <- as.matrix(t(rt$Zt) %*% t(Lt))
  X <- lf$X
  y <- model.response(lf$fr)
  n <- nrow(X); p <- ncol(X); q <- ncol(ZL)
  A <- crossprod(cbind(ZL, X, y)) + diag(c(rep(1, q), rep(0, p + 1)))
  R <- chol(A)  # upper: A = R'R, the last diagonal entry the root of the pwrss
  ld <- 2 * sum(log(diag(R)[1:(q + p)]))
  ld + (n - p) * (1 + log(2 * pi * R[q + p + 1, q + p + 1]^2 / (n - p)))
}
lf0 <- lFormula(f, data = d, REML = TRUE)
stopifnot(abs(reml_dense(lf0, getME(m, "theta")) - REMLcrit(m)) < 1e-8)

rescaled <- list()
for (k in c(1e8, 1e-8)) {
  dk <- d
  dk$Days <- d$Days * k
  warns <- character(0)
  res <- withCallingHandlers(
    tryCatch(lme4::lmer(f, data = dk, REML = TRUE), error = function(e) e),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  th <- getME(m, "theta")
  th[2:3] <- th[2:3] / k  # the Days row of the template T: diag(1, 1/k) T
  lf <- lFormula(f, data = dk, REML = TRUE, control = lmerControl(check.scaleX = "ignore"))
  # lme4's own summary of the model at that theta: a merMod assembled from lFormula's parts
  # with the deviance function initialised at th (so Days * 1e8 gets past "Downdated VtV")
  lf$reTrms$theta <- th
  devfun <- do.call(mkLmerDevfun, lf)
  at_th <- mkMerMod(environment(devfun), list(par = th, fval = devfun(th), conv = 0, message = ""),
                    lf$reTrms, fr = lf$fr)
  rescaled[[format(k)]] <- list(
    factor = k,
    lme4_error = if (inherits(res, "error")) conditionMessage(res) else NULL,
    lme4_criterion = if (inherits(res, "error")) NULL else unname(REMLcrit(res)),
    lme4_warnings = as.list(unique(warns)),
    attainable_criterion = reml_dense(lf, th),
    unscaled_plus_jacobian = unname(REMLcrit(m)) + 2 * log(k),
    theta = th, devfun_at_theta = devfun(th),
    summary_text = paste(capture.output(print(summary(at_th))), collapse = "\n"))
}
writeLines(toJSON(rescaled, auto_unbox = TRUE, digits = NA, null = "null"), file.path(args[2], "rescaled.json"))
for (r in rescaled) cat(sprintf("x %g: lme4 %s; attainable %.6f = %.6f\n", r$factor,
  if (is.null(r$lme4_error)) sprintf("%.4f", r$lme4_criterion) else r$lme4_error,
  r$attainable_criterion, r$unscaled_plus_jacobian))
