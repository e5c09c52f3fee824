# emmeans (choice of df method, at=, several p-value adjustments, response scale) and Nakagawa R2 with
# its variance components, for a list of models. Extension of /work/shared/reference/toolkit/toolkit_reference.R.
# usage: Rscript toolkit_extra.R SPEC.tsv DATA_DIR OUT_DIR    (DATA_DIR: directories joined by ":")
# SPEC columns (empty = not used / default):
#   id dataset kind(lmer|glmer) formula family link REML factors
#   specs    emmeans specs, the right side of "~" (e.g. "denomina | sex", "denomina * sex")
#   df       lmer df method: satterthwaite | kenward-roger | asymptotic (default satterthwaite; glmer: none)
#   at       R expression for emmeans(at = ...), e.g. list(Days = c(0, 4.5, 9))
#   adjust   comma list of extra pairs() adjustments, e.g. bonferroni,holm (Tukey pairs are always made)
#   type     emmeans type, e.g. response (back-transformed; pairs then are ratios)
#   r2       TRUE: performance::r2_nakagawa and insight::get_variance (which performance uses)
suppressPackageStartupMessages({library(lme4); library(emmeans); library(performance); library(jsonlite)})
args <- commandArgs(TRUE)
spec <- read.delim(args[1], stringsAsFactors = FALSE, na.strings = "", colClasses = "character")
dirs <- strsplit(args[2], ":")[[1]]
dir.create(args[3], showWarnings = FALSE, recursive = TRUE)
emm_options(lmerTest.limit = 1e6, pbkrtest.limit = 1e6)
has <- function(x) !is.null(x) && !is.na(x) && nzchar(x)
txt <- function(x) paste(capture.output(print(x)), collapse = "\n")
for (k in seq_len(nrow(spec))) {
  s <- spec[k, ]
  path <- file.path(dirs, paste0(s$dataset, ".csv")); path <- path[file.exists(path)][1]
  d <- read.csv(path, stringsAsFactors = TRUE)
  if (has(s$factors)) for (f in strsplit(s$factors, ",")[[1]]) d[[f]] <- factor(d[[f]])
  msgs <- character(0)
  keep <- function(expr) withCallingHandlers(expr,
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleMessage") })
  fam <- if (s$kind == "glmer") get(s$family)(link = if (has(s$link)) s$link else get(s$family)()$link) else NULL
  m <- keep(if (s$kind == "lmer") lmer(as.formula(s$formula), data = d, REML = as.logical(s$REML)) else
    glmer(as.formula(s$formula), data = d, family = fam))
  out <- list(id = s$id, dataset = s$dataset, kind = s$kind, formula = s$formula,
              family = if (has(s$family)) s$family else NULL, link = if (!is.null(fam)) fam$link else NULL,
              REML = if (has(s$REML)) as.logical(s$REML) else NULL)
  if (has(s$specs)) {
    ea <- list(m, as.formula(paste("~", s$specs)))
    if (s$kind == "lmer") { out$df_method <- if (has(s$df)) s$df else "satterthwaite"; ea$lmer.df <- out$df_method }
    if (has(s$at)) { ea$at <- eval(parse(text = s$at)); out$at <- ea$at }
    if (has(s$type)) { ea$type <- s$type; out$type <- s$type }
    e <- keep(do.call(emmeans, ea))
    out$specs <- s$specs
    out$emmeans <- as.data.frame(summary(e))
    out$emmeans_text <- txt(e)
    p <- pairs(e, adjust = "tukey")
    out$pairs <- as.data.frame(summary(p))
    out$pairs_text <- txt(p)
    if (has(s$adjust)) {
      out$pairs_adjusted <- list(); out$pairs_adjusted_text <- list()
      for (a in strsplit(s$adjust, ",")[[1]]) {
        pa <- pairs(e, adjust = a)
        out$pairs_adjusted[[a]] <- as.data.frame(summary(pa))
        out$pairs_adjusted_text[[a]] <- txt(pa)
      }
    }
  }
  if (has(s$r2) && as.logical(s$r2)) {
    r2 <- keep(r2_nakagawa(m))
    out$r2_marginal <- unname(r2$R2_marginal); out$r2_conditional <- unname(r2$R2_conditional)
    v <- keep(insight::get_variance(m))
    out$variance <- lapply(v, function(x) if (length(x) > 1 || !is.null(names(x))) as.list(x) else unname(x))
    out$r2_text <- txt(r2)
    if (s$kind == "glmer") {
      # Nakagawa's distribution variance for Poisson/Gamma etc. uses a refitted null model (random part
      # kept, fixed part ~ 1); store it so its fit can be checked too
      nm <- keep(insight::null_model(m))
      out$null_model <- list(formula = paste(deparse(formula(nm)), collapse = ""), fixef = as.list(fixef(nm)),
        theta = unname(getME(nm, "theta")), theta_names = names(getME(nm, "theta")),
        deviance_minus2loglik = -2 * as.numeric(logLik(nm)),
        varcorr = lapply(seq_len(nrow(vc <- as.data.frame(VarCorr(nm)))), function(i)
          list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
        convergence_messages = nm@optinfo$conv$lme4$messages)
    }
  }
  out$warnings <- msgs
  out$versions <- lapply(c(lme4 = "lme4", emmeans = "emmeans", performance = "performance", insight = "insight",
                           pbkrtest = "pbkrtest", lmerTest = "lmerTest"), function(p) as.character(packageVersion(p)))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, dataframe = "columns", na = "null", null = "null"),
             file.path(args[3], paste0(s$id, ".json")))
  cat(s$id, if (!is.null(out$r2_marginal)) sprintf("R2m %.6f R2c %.6f", out$r2_marginal, out$r2_conditional) else "",
      paste(msgs, collapse = " | "), "\n")
}
