# More emmeans / R2 / back-transform references for lmmpy's toolkit tests (beyond toolkit_reference.R).
# usage (from the project root): Rscript tests/reference/toolkit/toolkit_extra.R DATA_DIR OUT_DIR
#   DATA_DIR holds mlbook2.csv, sleepstudy.csv, VerbAgg.csv, grouseticks.csv (the lme4 / mlmRev data as CSV)
# Each case writes OUT_DIR/extra_<id>.json: the model, the emmeans call, R's summary tables and printed text.
suppressPackageStartupMessages({library(lme4); library(emmeans); library(performance); library(insight); library(jsonlite)})
args <- commandArgs(TRUE)
dd <- args[1]; out <- args[2]
emm_options(lmerTest.limit = 1e6, pbkrtest.limit = 1e6)
rd <- function(name, factors) {
  d <- read.csv(file.path(dd, paste0(name, ".csv")), stringsAsFactors = TRUE)
  for (f in factors) d[[f]] <- factor(d[[f]])
  d
}
mlbook2 <- rd("mlbook2", c("schoolnr", "denomina", "sex"))
mlsub <- droplevels(subset(mlbook2, schoolnr %in% as.character(1:80)))  # schoolnr <= 80: n = 1079, for Kenward-Roger
sleep <- rd("sleepstudy", "Subject")
tab <- function(x) as.data.frame(summary(x))
txt <- function(x) paste(capture.output(print(x)), collapse = "\n")
save <- function(id, o) writeLines(toJSON(o, auto_unbox = TRUE, digits = NA, dataframe = "columns", na = "null"),
                                   file.path(out, paste0("extra_", id, ".json")))
emm_case <- function(id, data_name, subset, formula, m, specs, ddf, at = NULL, contrasts = list()) {
  e <- if (is.null(at)) emmeans(m, as.formula(paste("~", specs)), lmer.df = ddf) else
    emmeans(m, as.formula(paste("~", specs)), lmer.df = ddf, at = at)
  o <- list(id = id, dataset = data_name, subset = subset, formula = formula, REML = isREML(m), specs = specs,
            ddf = ddf, at = at, emmeans = tab(e), emmeans_text = txt(e), contrasts = list())
  for (cn in names(contrasts)) {
    a <- contrasts[[cn]]
    cc <- contrast(e, method = a$method, adjust = a$adjust)
    o$contrasts[[cn]] <- list(method = a$method, adjust = a$adjust, table = tab(cc), text = txt(cc))
  }
  save(id, o)
  cat(id, "\n")
}
f1 <- "langPOST ~ IQ_verb + denomina * sex + (1 | schoolnr)"
m1 <- lmer(as.formula(f1), data = mlbook2)
emm_case("mlbook2_denomina", "mlbook2", "", f1, m1, "denomina", "satterthwaite",
         contrasts = list(pairs_bonferroni = list(method = "pairwise", adjust = "bonferroni"),
                          revpairwise_holm = list(method = "revpairwise", adjust = "holm"),
                          eff_fdr = list(method = "eff", adjust = "fdr"),
                          trt_none = list(method = "trt.vs.ctrl", adjust = "none"),
                          consec_sidak = list(method = "consec", adjust = "sidak")))
emm_case("mlbook2_denomina_by_sex_asymptotic", "mlbook2", "", f1, m1, "sex | denomina", "asymptotic",
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
emm_case("mlbook2_cells", "mlbook2", "", f1, m1, "denomina * sex", "satterthwaite",
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
m1s <- lmer(as.formula(f1), data = mlsub)
emm_case("mlsub_kr", "mlbook2", "schoolnr <= 80", f1, m1s, "denomina | sex", "kenward-roger",
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
emm_case("mlsub_kr_sex", "mlbook2", "schoolnr <= 80", f1, m1s, "sex", "kenward-roger",
         contrasts = list(pairs_none = list(method = "pairwise", adjust = "none")))
f2 <- "langPOST ~ IQ_verb * sex + ses + (IQ_verb | schoolnr)"
m2 <- lmer(as.formula(f2), data = mlbook2)
emm_case("mlbook2_iq_sex_at", "mlbook2", "", f2, m2, "sex | IQ_verb", "satterthwaite", at = list(IQ_verb = c(-2, 0, 2)),
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
emm_case("mlbook2_sex_at_ses", "mlbook2", "", f2, m2, "sex", "satterthwaite", at = list(ses = 5, IQ_verb = c(-1, 1)),
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
f3 <- "Reaction ~ factor(Days) + (1 | Subject)"
m3 <- lmer(as.formula(f3), data = subset(sleep, Days <= 3))
emm_case("sleep_factor_days", "sleepstudy", "Days <= 3", f3, m3, "Days", "satterthwaite",
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))
mlgap <- subset(mlbook2, !(denomina == "4" & sex == "1"))  # an empty cell: rank-deficient X, a nonEst mean
m3g <- lmer(as.formula(f1), data = mlgap)
emm_case("mlgap_nonest", "mlbook2", "not (denomina 4 and sex 1)", f1, m3g, "denomina | sex", "satterthwaite",
         contrasts = list(pairs_tukey = list(method = "pairwise", adjust = "tukey")))

# Nakagawa R2 of more lmer fits, with the variances it is made of
r2_case <- function(id, data_name, subset, formula, m) {
  v <- suppressWarnings(get_variance(m))
  r2 <- suppressWarnings(r2_nakagawa(m))
  save(id, list(id = id, dataset = data_name, subset = subset, formula = formula, REML = isREML(m),
                var_fixed = v$var.fixed, var_random = if (is.null(v$var.random)) NA else v$var.random,
                var_distribution = v$var.distribution,
                r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional)))
  cat(id, unname(r2$R2_marginal), unname(r2$R2_conditional), "\n")
}
r2_case("r2_mlbook2_slope", "mlbook2", "", f2, m2)
f4 <- "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"
r2_case("r2_sleep_uncorr", "sleepstudy", "", f4, lmer(as.formula(f4), data = sleep))
f5 <- "Reaction ~ Days + (Days | Subject)"
r2_case("r2_sleep_ml", "sleepstudy", "", f5, lmer(as.formula(f5), data = sleep, REML = FALSE))
f6 <- "langPOST ~ IQ_verb + (1 | schoolnr) + (1 | denomina)"
r2_case("r2_mlbook2_two_terms", "mlbook2", "", f6, lmer(as.formula(f6), data = mlbook2))

# GLMM pieces (no lmmpy.glmer needed): the variances of R2 and emmeans' back-transform
verb <- rd("VerbAgg", "id")
grouse <- rd("grouseticks", c("BROOD", "YEAR", "LOCATION"))
glmm_case <- function(id, data_name, formula, m, specs = NULL) {
  v <- suppressWarnings(get_variance(m))
  r2 <- suppressWarnings(r2_nakagawa(m))
  fam <- family(m)
  o <- list(id = id, dataset = data_name, formula = formula, family = fam$family, link = fam$link,
            var_fixed = v$var.fixed, var_random = v$var.random, var_distribution = v$var.distribution,
            r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional))
  if (fam$family == "poisson") o$null_intercept <- unname(fixef(insight::null_model(m))[1])
  if (!is.null(specs)) {
    e <- emmeans(m, as.formula(paste("~", specs)))
    o$specs <- specs
    o$emmeans_link <- tab(e)
    o$emmeans_response <- as.data.frame(summary(e, type = "response"))
    o$emmeans_response_text <- txt(summary(e, type = "response"))
  }
  save(id, o)
  cat(id, o$var_distribution, "\n")
}
fv <- "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
glmm_case("glmm_verbagg_logit", "VerbAgg", fv, glmer(as.formula(fv), data = verb, family = binomial), "btype")
glmm_case("glmm_verbagg_probit", "VerbAgg", fv, glmer(as.formula(fv), data = verb, family = binomial("probit")), "btype")
fg <- "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
glmm_case("glmm_grouse_poisson", "grouseticks", fg, glmer(as.formula(fg), data = grouse, family = poisson), "YEAR")
