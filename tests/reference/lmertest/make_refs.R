# lmerTest's printed summary (Satterthwaite df and p-values) for a few models, as JSON.
# usage: Rscript make_refs.R DATA_DIR OUT_DIR
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
rd <- function(name, factors) { d <- read.csv(file.path(args[1], paste0(name, ".csv"))); for (f in factors) d[[f]] <- factor(d[[f]]); d }
models <- list(
  list(id = "sleepstudy_slopes_reml", data = "sleepstudy", factors = "Subject", formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
  list(id = "mlbook2_slope_ml", data = "mlbook2", factors = "schoolnr", formula = "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)", REML = FALSE),
  list(id = "pastes_cask_reml", data = "Pastes", factors = c("batch", "cask"), formula = "strength ~ cask + (1 | batch)", REML = TRUE))
for (s in models) {
  d <- rd(s$data, s$factors)
  m <- lmer(as.formula(s$formula), data = d, REML = s$REML)
  out <- list(id = s$id, formula = s$formula, REML = s$REML, theta = unname(getME(m, "theta")),
              summary_text = paste(capture.output(print(summary(m))), collapse = "\n"),
              anova_text = paste(capture.output(print(anova(m))), collapse = "\n"))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), file.path(args[2], paste0(s$id, ".json")))
}
