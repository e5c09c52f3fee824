# lmerTest's type III table (Satterthwaite) for models with interactions, as JSON.
# usage: Rscript make_type3.R DATA_DIR OUT_DIR
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(file.path(args[1], "mlbook2.csv")); d$schoolnr <- factor(d$schoolnr); d$denomina <- factor(d$denomina)
models <- list(
  list(id = "mlbook2_factor_interaction_reml", formula = "langPOST ~ IQ_verb * denomina + ses + (1 | schoolnr)"),
  list(id = "mlbook2_numeric_interaction_reml", formula = "langPOST ~ IQ_verb * ses + (1 | schoolnr)"))
for (s in models) {
  m <- lmer(as.formula(s$formula), data = d, REML = TRUE)
  a <- anova(m)
  out <- list(id = s$id, formula = s$formula, theta = unname(getME(m, "theta")), factors = c("schoolnr", "denomina"),
              term = rownames(a), F = unname(a[["F value"]]), NumDF = unname(a[["NumDF"]]), DenDF = unname(a[["DenDF"]]),
              p = unname(a[["Pr(>F)"]]))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), file.path(args[2], paste0(s$id, "_type3.json")))
  print(a)
}
