# lme4's numbers for tests/test_inputs_round2.py (run from this folder: Rscript make_refs.R).
# lme4 1.1-31; writes inputs.json here.
suppressMessages({library(lme4); library(jsonlite)})
sleep <- read.csv("../../../data/sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject)
i <- seq_len(nrow(sleep)) - 1            # 0-based row numbers, as the Python test builds them
w <- 1 + (i %% 4) / 2                    # prior weights 1, 1.5, 2, 2.5, 1, ...
off <- 5 * sin(i)                        # an offset
m1 <- lmer(Reaction ~ Days + (Days | Subject), sleep)
mw <- lmer(Reaction ~ Days + (1 | Subject), sleep, weights = w)
mo <- lmer(Reaction ~ Days + (1 | Subject), sleep, offset = off)
a <- suppressWarnings(anova(m1, m1))     # "failed to find model names": lme4 names them MODEL1, MODEL2
nd <- head(sleep, 3); nd$Days[2] <- NA   # a missing covariate: NA for that row
ng <- head(sleep, 3); ng$Subject[2] <- NA # a missing grouping value
err <- function(expr) tryCatch({expr; NA}, error = function(e) conditionMessage(e))
set.seed(3)
wide <- head(sleep, 20); for (k in 0:24) wide[[paste0("x", k)]] <- rnorm(20)
wide_formula <- as.formula(paste("Reaction ~", paste0("x", 0:24, collapse = "+"), "+ (1|Subject)"))
out <- list(
  weights_criterion = REMLcrit(mw), weights_fixef = as.list(fixef(mw)),
  offset_criterion = REMLcrit(mo), offset_fixef = as.list(fixef(mo)),
  anova_m1_m1 = list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, deviance = a$deviance,
                     Chisq = a$Chisq[2], Df = a$Df[2], printed = capture.output(print(a))),
  predict_na_covariate = predict(m1, nd),
  predict_na_covariate_population = predict(m1, nd, re.form = NA),
  predict_na_group_allow_new = predict(m1, ng, allow.new.levels = TRUE),
  error_na_group = err(predict(m1, ng)),
  error_simulate_negative = err(simulate(m1, -1)),
  error_simulate_zero = err(simulate(m1, 0)),
  error_reml_string = err(lmer(Reaction ~ Days + (1 | Subject), sleep, REML = "no")),
  error_reml_null = err(lmer(Reaction ~ Days + (1 | Subject), sleep, REML = NULL)),
  error_anova_shuffled = err({d2 <- sleep; d2$Reaction <- rev(sleep$Reaction)
                              anova(lmer(Reaction ~ Days + (1 | Subject), d2), m1)}),
  error_anova_size = err(anova(lmer(Reaction ~ Days + (1 | Subject), sleep[-1, ]), m1)),
  error_wide_reml = err(suppressMessages(lmer(wide_formula, wide))),
  error_empty = err(lmer(Reaction ~ Days + (1 | Subject), sleep[0, ])),
  error_one_row = err(lmer(Reaction ~ Days + (1 | Subject), sleep[1, ])),
  confint_level_1.5 = suppressWarnings(confint(m1, method = "Wald", level = 1.5))["Days", ]
)
write_json(out, "inputs.json", digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null")
