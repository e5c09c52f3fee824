# lme4's summary(allFit(fit)) for the three models listed below (lme4 1.1-31).
# Run from this folder: Rscript allfit_reference.R ../../../data
# Writes allfit_<name>.json: per lme4 optimizer, which.OK, llik, fixef, sdcor (as.data.frame(VarCorr)
# order: sd_x|g, cor_x.y|g per term, then sigma), theta and the convergence messages.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args)) args[1] else "../../../data"
read <- function(name, factors) {
  d <- read.csv(file.path(data_dir, paste0(name, ".csv")))
  for (f in factors) d[[f]] <- factor(d[[f]])
  d
}
models <- list(
  sleepstudy_slopes_reml = list(data = read("sleepstudy", "Subject"),
                                formula = Reaction ~ Days + (Days | Subject), REML = TRUE),
  dyestuff2_singular_ml = list(data = read("Dyestuff2", "Batch"), formula = Yield ~ 1 + (1 | Batch), REML = FALSE),
  pastes_nested_ml = list(data = read("Pastes", c("batch", "cask", "sample")),
                          formula = strength ~ 1 + (1 | batch/cask), REML = FALSE)
)
for (name in names(models)) {
  m <- models[[name]]
  fit <- lmer(m$formula, data = m$data, REML = m$REML)
  ss <- suppressWarnings(summary(allFit(fit, verbose = FALSE)))
  out <- list(
    formula = paste(deparse(m$formula), collapse = " "), REML = m$REML,
    optimizers = names(ss$llik),
    which_ok = as.list(ss$which.OK),
    llik = as.list(ss$llik),
    fixef = lapply(seq_len(nrow(ss$fixef)), function(i) as.list(ss$fixef[i, ])),
    sdcor = lapply(seq_len(nrow(ss$sdcor)), function(i) unname(ss$sdcor[i, ])),
    sdcor_names = colnames(ss$sdcor),
    theta = lapply(seq_len(nrow(ss$theta)), function(i) unname(ss$theta[i, ])),
    msgs = lapply(ss$msgs, function(x) if (is.null(x)) list() else as.list(x))
  )
  names(out$fixef) <- rownames(ss$fixef); names(out$sdcor) <- rownames(ss$sdcor); names(out$theta) <- rownames(ss$theta)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), paste0("allfit_", name, ".json"))
  print(ss$llik); print(ss$sdcor)
}
