# Writes lme4 glmer reference fits as JSON, one file per model.
# usage: Rscript glmer_reference.R SPEC.tsv DATA_DIR OUT_DIR
#   DATA_DIR may be several directories joined by ":"; <dataset>.csv is read from the first that has it.
# SPEC.tsv columns: id dataset formula family link nAGQ factors weights [offset]
#   family: binomial | poisson | Gamma ; link: R's link name ; weights: a column name or empty
#   offset (optional column): an R expression in the data's columns, e.g. log(exposure), passed as
#   glmer(offset = ...); empty: none (an offset() term inside the formula still works as usual).
# Extension of /work/shared/reference/glmm/glmer_reference.R: same JSON fields, plus `offset`, `sigma`,
# `stat_name` (the name of summary()'s third coefficient column, which `zvalue` holds: "t value" for
# Gamma), `response_levels` (for a factor response: level 1 = failure) and `optimizer`.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
spec <- read.delim(args[1], stringsAsFactors = FALSE, comment.char = "#", na.strings = "")
data_dir <- args[2]; out_dir <- args[3]
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
to_list_matrix <- function(m) lapply(seq_len(nrow(m)), function(i) unname(m[i, ]))
for (k in seq_len(nrow(spec))) {
  s <- spec[k, ]
  dirs <- strsplit(data_dir, ":")[[1]]
  path <- file.path(dirs, paste0(s$dataset, ".csv")); path <- path[file.exists(path)][1]
  d <- read.csv(path, stringsAsFactors = TRUE)
  off <- if (!is.null(s$offset) && !is.na(s$offset) && nzchar(s$offset)) s$offset else NA
  if (!is.na(s$factors) && nzchar(s$factors)) for (f in strsplit(s$factors, ",")[[1]]) d[[f]] <- factor(d[[f]])
  fam <- get(s$family)(link = s$link)
  nagq <- as.integer(s$nAGQ)
  msgs <- character(0)
  t0 <- proc.time()[["elapsed"]]
  cl <- list(as.formula(s$formula), data = quote(d), family = quote(fam), nAGQ = nagq)
  if (!is.na(s$weights) && nzchar(s$weights)) { d$.w <- d[[s$weights]]; cl$weights <- quote(.w) }
  if (!is.na(off)) cl$offset <- str2lang(off)  # evaluated in the data, as glmer(offset = log(exposure)) would be
  m <- withCallingHandlers(
    do.call(glmer, cl),
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleMessage") })
  secs <- proc.time()[["elapsed"]] - t0
  vc <- as.data.frame(VarCorr(m))
  red <- as.data.frame(ranef(m, condVar = TRUE))
  ranefs <- lapply(unique(as.character(red$grpvar)), function(g) {
    r <- red[red$grpvar == g, ]
    list(group = g, term = as.character(r$term), level = as.character(r$grp), value = r$condval, cond_sd = r$condsd)
  })
  ss <- summary(m); fe <- ss$coefficients
  out <- list(
    id = s$id, dataset = s$dataset, formula = s$formula, family = s$family, link = s$link, nAGQ = nagq,
    weights = if (!is.na(s$weights)) s$weights else NULL,
    offset = if (!is.na(off)) off else NULL,
    nobs = nobs(m), ngrps = as.list(ngrps(m)),
    deviance_minus2loglik = -2 * as.numeric(logLik(m)), deviance = deviance(m),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), df_resid = df.residual(m),
    AIC = AIC(m), BIC = BIC(m),
    fixef = as.list(fixef(m)),
    se = as.list(setNames(fe[, "Std. Error"], rownames(fe))),
    zvalue = as.list(setNames(fe[, 3], rownames(fe))),
    stat_name = colnames(fe)[3],
    pvalue = if (ncol(fe) >= 4) as.list(setNames(fe[, 4], rownames(fe))) else NULL,
    sigma = sigma(m),
    response_levels = if (is.factor(model.response(model.frame(m)))) levels(model.response(model.frame(m))) else NULL,
    optimizer = m@optinfo$optimizer,
    vcov_fixef = to_list_matrix(as.matrix(vcov(m))),
    theta = unname(getME(m, "theta")), theta_names = names(getME(m, "theta")),
    lower = unname(getME(m, "lower")),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    ranef = ranefs,
    fitted_head = unname(head(fitted(m), 20)),
    linpred_head = unname(head(predict(m, type = "link"), 20)),
    pearson_resid_head = unname(head(residuals(m, type = "pearson"), 20)),
    deviance_resid_head = unname(head(residuals(m, type = "deviance"), 20)),
    scaled_resid_quantiles = unname(quantile(residuals(m, type = "pearson", scaled = TRUE))),
    is_singular = isSingular(m),
    warnings = msgs,
    summary_text = paste(capture.output(print(ss)), collapse = "\n"),
    fit_seconds = secs,
    lme4_version = as.character(packageVersion("lme4"))
  )
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = FALSE), file.path(out_dir, paste0(s$id, ".json")))
  cat(sprintf("%-30s dev=%.6f t=%.2fs %s\n", s$id, out$deviance_minus2loglik, secs, paste(msgs, collapse=" | ")))
}
