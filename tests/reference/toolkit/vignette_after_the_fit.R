# The R numbers vignettes/07-after-the-fit.md shows (and tests/toolkit/test_predict_interval.py's
# prediction_intervals_sleepstudy.json).  usage, from the project root:
#   Rscript tests/reference/toolkit/vignette_after_the_fit.R data tests/reference/toolkit
# R 4.2.2, lme4 1.1-31, emmeans 1.8.4-1, lmerTest 3.1-3, performance 0.10.2.
suppressPackageStartupMessages({library(lme4); library(emmeans); library(performance); library(jsonlite)})
args <- commandArgs(TRUE)
dd <- args[1]; out <- args[2]
emm_options(lmerTest.limit = 1e6)
mlbook2 <- read.csv(file.path(dd, "mlbook2.csv"))
for (f in c("schoolnr", "denomina", "sex")) mlbook2[[f]] <- factor(mlbook2[[f]])
sleep <- read.csv(file.path(dd, "sleepstudy.csv")); sleep$Subject <- factor(sleep$Subject)
cbpp <- read.csv(file.path(dd, "cbpp.csv")); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
grouse <- read.csv(file.path(dd, "grouseticks.csv"))
for (f in c("YEAR", "BROOD", "LOCATION")) grouse[[f]] <- factor(grouse[[f]])

m <- lmer(langPOST ~ IQ_verb + denomina * sex + (1 | schoolnr), data = mlbook2)
e <- emmeans(m, ~ denomina)
print(e)
print(pairs(e))
print(r2_nakagawa(m), digits = 5)

s <- lmer(Reaction ~ Days + (Days | Subject), data = sleep)
print(r2_nakagawa(s), digits = 5)

g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
print(emmeans(g, ~ period, type = "response"))
print(pairs(emmeans(g, ~ period, type = "response")))

p <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = grouse, family = poisson)
print(r2_nakagawa(p), digits = 5)

# prediction intervals, computed here by their definition (lme4 1.1-31's predict has no se.fit):
# se.fit = sqrt(x' V x); prediction variance x' V x + z' C z + sigma^2, C = condVar of the
# subject's random effects (a known subject) or the term's covariance (a new one); normal quantiles
nd <- data.frame(Subject = rep(c("308", "new"), each = 3), Days = rep(c(0, 4.5, 9), 2))
fit <- predict(s, newdata = nd, allow.new.levels = TRUE)
X <- model.matrix(~ Days, nd)
se <- sqrt(rowSums((X %*% as.matrix(vcov(s))) * X))
re <- ranef(s, condVar = TRUE)$Subject
pv <- attr(re, "postVar")
Sigma <- VarCorr(s)$Subject
var_re <- sapply(seq_len(nrow(nd)), function(i) {
  C <- if (nd$Subject[i] %in% rownames(re)) pv[, , match(nd$Subject[i], rownames(re))] else Sigma
  drop(X[i, ] %*% C %*% X[i, ])
})
sp <- sqrt(se^2 + var_re + sigma(s)^2)
q <- qnorm(0.975)
tab <- data.frame(nd, fit = fit, se.fit = se, conf.lwr = fit - q * se, conf.upr = fit + q * se,
                  pred.lwr = fit - q * sp, pred.upr = fit + q * sp)
print(tab, digits = 6)
writeLines(toJSON(list(formula = "Reaction ~ Days + (Days | Subject)", level = 0.95, table = tab,
                       versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))),
                  auto_unbox = TRUE, digits = NA, dataframe = "columns"),
           file.path(out, "prediction_intervals_sleepstudy.json"))
