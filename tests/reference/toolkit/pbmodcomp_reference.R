# pbkrtest's PBmodcomp on sleepstudy: is a quadratic trend in Days needed?  (lme4 1.1-31,
# pbkrtest 0.5.2).  Run from this folder: Rscript pbmodcomp_reference.R ../../../data
# Writes pbmodcomp_sleepstudy.json (the test, pbkrtest's print, the reference distribution's
# summary) and pbmodcomp_sleepstudy_ref.csv (the nsim bootstrap LRT statistics).
suppressPackageStartupMessages({library(lme4); library(pbkrtest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args)) args[1] else "../../../data"
s <- read.csv(file.path(data_dir, "sleepstudy.csv")); s$Subject <- factor(s$Subject)
large <- lmer(Reaction ~ Days + I(Days^2) + (Days | Subject), data = s)  # REML: PBmodcomp refits by ML
small <- lmer(Reaction ~ Days + (Days | Subject), data = s)
nsim <- 3000
set.seed(20261201)
pb <- suppressWarnings(PBmodcomp(large, small, nsim = nsim))
ref <- as.numeric(pb$ref)
printed <- capture.output(print(pb))
out <- list(
  large = "Reaction ~ Days + I(Days^2) + (Days | Subject)",
  small = "Reaction ~ Days + (Days | Subject)",
  nsim = nsim, npos = unname(pb$samples["npos"]), n_extreme = pb$n.extreme,
  LRT_stat = pb$test["LRT", "stat"], LRT_df = pb$test["LRT", "df"], LRT_p = pb$test["LRT", "p.value"],
  PB_p = pb$test["PBtest", "p.value"],
  ref_mean = mean(ref[ref > 0]), ref_var = var(ref[ref > 0]),
  ref_quantiles = unname(quantile(ref, c(0.5, 0.9, 0.95))),
  printed = printed
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "pbmodcomp_sleepstudy.json")
write.csv(data.frame(stat = ref), "pbmodcomp_sleepstudy_ref.csv", row.names = FALSE)
cat(printed, sep = "\n")
