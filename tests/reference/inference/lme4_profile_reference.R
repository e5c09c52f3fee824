# lme4's names of confint()'s rows (oldNames = TRUE, its default, and FALSE) for Wald, profile and
# bootstrap intervals, the .par names of profile(), and the profile intervals of more models, for
# tests/test_profile.py.  The REML fits are profiled on the ML deviance (lme4's devfun2 refits by ML).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
# usage: Rscript lme4_profile_reference.R DATA_DIR OUT_FILE   (DATA_DIR: the repository's data/)
args <- commandArgs(trailingOnly = TRUE); dd <- args[1]; out <- args[2]
rd <- function(n, f) { d <- read.csv(file.path(dd, paste0(n, ".csv"))); for (x in f) d[[x]] <- factor(d[[x]]); d }
models <- list(
  sleepstudy_slopes_reml = list("sleepstudy", "Subject", "Reaction ~ Days + (Days | Subject)", TRUE),
  penicillin_crossed_reml = list("Penicillin", c("plate", "sample"), "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE),
  pastes_nested_reml = list("Pastes", c("batch", "cask"), "strength ~ 1 + (1 | batch/cask)", TRUE),
  sleepstudy_uncorr_reml = list("sleepstudy", "Subject", "Reaction ~ Days + (Days || Subject)", TRUE),
  dyestuff2_singular_reml = list("Dyestuff2", "Batch", "Yield ~ 1 + (1 | Batch)", TRUE),
  # a 3 x 3 covariance: names only (lme4 1.1-31 stops profiling it: "profiling detected new, lower deviance")
  mlbook2_three_slopes_ml = list("mlbook2", "schoolnr", "langPOST ~ IQ_verb + ses + (IQ_verb + ses | schoolnr)", FALSE))
res <- list(lme4 = as.character(packageVersion("lme4")))
for (id in names(models)) {
  s <- models[[id]]
  m <- suppressMessages(lmer(as.formula(s[[3]]), data = rd(s[[1]], s[[2]]), REML = s[[4]]))
  r <- list(formula = s[[3]], dataset = s[[1]], REML = s[[4]],
            wald_names = rownames(confint(m, method = "Wald")),
            wald_names_new = rownames(confint(m, method = "Wald", oldNames = FALSE)))
  if (id != "mlbook2_three_slopes_ml") {
    pr <- profile(m)                    # signames = TRUE: .sig01, ..., .sigma
    ci <- confint(pr)
    r$profile_par <- unique(as.character(pr$.par))
    r$profile_names <- rownames(ci)
    ci_new <- confint(m, method = "profile", oldNames = FALSE, quiet = TRUE)
    r$profile_names_new <- rownames(ci_new)
    r$profile_par_new <- unique(as.character(profile(m, signames = FALSE)$.par))
    r$confint_profile <- list(lower = unname(ci[, 1]), upper = unname(ci[, 2]))
    set.seed(1)
    r$boot_names <- rownames(suppressWarnings(confint(m, method = "boot", nsim = 4, quiet = TRUE)))
  }
  res[[id]] <- r
  cat(id, "done\n")
}
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
