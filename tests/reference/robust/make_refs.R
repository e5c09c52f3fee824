# lme4 reference fits with prior weights and offsets, written with the fields of
# ../../../../shared/reference/lme4_reference.R (see its README) plus `weights` and `offset`.
# usage: Rscript make_refs.R models.tsv DATA_DIR OUT_DIR
# models.tsv columns: id dataset formula REML factors weights offset
#   weights, offset: R expressions in the data's columns (empty for none)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
spec <- read.delim(args[1], stringsAsFactors = FALSE, comment.char = "#", na.strings = "")
for (k in seq_len(nrow(spec))) {
  s <- spec[k, ]
  d <- read.csv(file.path(args[2], paste0(s$dataset, ".csv")), stringsAsFactors = TRUE)
  if (!is.na(s$factors)) for (f in strsplit(s$factors, ",")[[1]]) d[[f]] <- factor(d[[f]])
  d$.w <- if (!is.na(s$weights)) eval(parse(text = s$weights), d) else rep(1, nrow(d))
  d$.o <- if (!is.na(s$offset)) eval(parse(text = s$offset), d) else rep(0, nrow(d))
  REML <- as.logical(s$REML)
  m <- lmer(as.formula(s$formula), data = d, REML = REML, weights = .w, offset = .o)
  vc <- as.data.frame(VarCorr(m))
  red <- as.data.frame(ranef(m, condVar = TRUE))
  ss <- summary(m)
  fe <- ss$coefficients
  out <- list(
    id = s$id, dataset = s$dataset, formula = s$formula, REML = REML,
    weights = s$weights, offset = s$offset,
    nobs = nobs(m), ngrps = as.list(ngrps(m)),
    criterion = if (REML) unname(REMLcrit(m)) else unname(deviance(m)),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
    fixef = as.list(fixef(m)),
    se = as.list(setNames(fe[, "Std. Error"], rownames(fe))),
    vcov_fixef = lapply(seq_len(nrow(vcov(m))), function(i) unname(as.matrix(vcov(m))[i, ])),
    theta = unname(getME(m, "theta")), sigma = sigma(m),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    ranef = lapply(unique(as.character(red$grpvar)), function(g) {
      r <- red[red$grpvar == g, ]
      list(group = g, term = as.character(r$term), level = as.character(r$grp), value = r$condval, cond_sd = r$condsd)
    }),
    fitted_head = unname(head(fitted(m), 20)),
    resid_head = unname(head(residuals(m), 20)),
    pearson_head = unname(head(residuals(m, type = "pearson"), 20)),
    is_singular = isSingular(m),
    summary_text = paste(capture.output(print(ss)), collapse = "\n"),
    lme4_version = as.character(packageVersion("lme4"))
  )
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null"), file.path(args[3], paste0(s$id, ".json")))
  cat(sprintf("%-28s crit=%.6f\n", s$id, out$criterion))
}
