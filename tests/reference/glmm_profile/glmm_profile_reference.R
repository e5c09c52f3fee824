# lme4's profile confidence intervals of glmer fits, for tests/glmm/test_glmer_profile.py.
# Run from this directory: Rscript glmm_profile_reference.R /work/shared/data ../glmm/data
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
dd <- if (length(args)) args[1] else "/work/shared/data"
simdir <- if (length(args) > 1) args[2] else "../glmm/data"  # the simulated data beside the glmm references
cbpp <- read.csv(file.path(dd, "cbpp.csv"), colClasses = c(herd = "factor", period = "factor"))
gt <- read.csv(file.path(dd, "grouseticks.csv"),
               colClasses = c(INDEX = "factor", BROOD = "factor", YEAR = "factor", LOCATION = "factor"))
one <- function(id, m) {
  t0 <- proc.time()[["elapsed"]]
  ci <- confint(m, method = "profile", level = 0.95)
  secs <- proc.time()[["elapsed"]] - t0
  list(id = id, formula = deparse(formula(m)), family = family(m)$family, link = family(m)$link,
       theta = unname(getME(m, "theta")), beta = unname(fixef(m)), minus2loglik = -2 * c(logLik(m)),
       names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]), seconds = secs,
       lme4 = as.character(packageVersion("lme4")))
}
out <- list(
  one("cbpp_logit", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)),
  one("grouseticks_poisson_brood_location",
      glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), gt, family = poisson)),
  one("binomial_slope_cbind",
      glmer(cbind(succ, n - succ) ~ x + (x | g), read.csv(file.path(simdir, "binomial_slope.csv")), family = binomial)),
  one("singular_binary",  # theta = 0 at the optimum ("boundary (singular) fit")
      glmer(y ~ x + (1 | g), read.csv(file.path(simdir, "singular_binary.csv")), family = binomial)),
  one("cbpp_agq25",
      glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial, nAGQ = 25))
)
for (o in out) write_json(o, paste0(o$id, ".json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
