# performance::r2_nakagawa and insight::get_variance of Gamma GLMMs (log and inverse links):
# the distribution-specific variance is Gamma()$variance(sigma) = sigma^2 (insight 0.19.0's
# .compute_variance_distribution).  R 4.2.2, lme4 1.1-31, performance 0.10.2, insight 0.19.0.
# usage, from the project root:
#   Rscript tests/reference/toolkit/glmer/gamma_r2.R tests/reference/glmm/data tests/reference/toolkit/glmer
suppressMessages({library(lme4); library(performance); library(insight); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "gamma_positive.csv")); d$g <- factor(d$g)
out <- list()
for (link in c("log", "inverse")) {
  m <- glmer(y ~ x + (1 | g), data = d, family = Gamma(link = link))
  r2 <- r2_nakagawa(m)
  v <- get_variance(m)
  out[[link]] <- list(formula = "y ~ x + (1 | g)", family = "Gamma", link = link, sigma = sigma(m),
                      fixef = as.list(fixef(m)), theta = unname(getME(m, "theta")),
                      deviance_minus2loglik = -2 * as.numeric(logLik(m)),
                      r2_conditional = unname(r2$R2_conditional), r2_marginal = unname(r2$R2_marginal),
                      variance = v[c("var.fixed", "var.random", "var.residual", "var.distribution", "var.dispersion")])
}
out$versions <- list(lme4 = as.character(packageVersion("lme4")), performance = as.character(packageVersion("performance")),
                     insight = as.character(packageVersion("insight")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), file.path(args[2], "gamma_r2.json"))
