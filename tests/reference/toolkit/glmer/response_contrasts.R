# emmeans' contrasts of back-transformed means (type = "response") beyond pairs: effects,
# treatment-vs-control, reversed pairs (all odds ratios), a contrast whose coefficients do not
# sum to zero and a mixed set (both left on the logit scale).  R 4.2.2, lme4 1.1-31, emmeans 1.8.4-1.
# usage, from the project root: Rscript tests/reference/toolkit/glmer/response_contrasts.R data tests/reference/toolkit/glmer
suppressMessages({library(lme4); library(emmeans); library(jsonlite)})
args <- commandArgs(TRUE)
cbpp <- read.csv(file.path(args[1], "cbpp.csv")); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
e <- emmeans(g, ~ period, type = "response")
cases <- list(
  eff = contrast(e, "eff"),
  trt_vs_ctrl_none = contrast(e, "trt.vs.ctrl", adjust = "none"),
  revpairwise_none = pairs(e, reverse = TRUE, adjust = "none"),
  not_zero_sum = contrast(e, list(twice1 = c(2, 0, 0, 0))),
  mixed = contrast(e, list(c1 = c(1, -1, 0, 0), c2 = c(2, 0, 0, 0)))
)
out <- lapply(cases, function(x) list(table = as.data.frame(summary(x)),
                                      text = paste(capture.output(print(x)), collapse = "\n")))
out$formula <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
out$versions <- list(lme4 = as.character(packageVersion("lme4")), emmeans = as.character(packageVersion("emmeans")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, dataframe = "columns", na = "null"),
           file.path(args[2], "cbpp_response_contrasts.json"))
