# lme4's fits of the formula-language cases of tests/test_formula_language.py, as refs.json.
# usage: Rscript make_refs.R DATA_DIR OUT_DIR   (DATA_DIR holds sleepstudy.csv)
# Every data set below is sleepstudy plus columns computed from it; the test builds the same
# columns in pandas.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(file.path(args[1], "sleepstudy.csv"))
d$Subject <- factor(d$Subject)
d$react.time <- d$Reaction                      # a dotted name, used inside calls
d$days.1 <- d$Days + 1
off_arg <- (d$Days %% 3) * 5                    # the offset= argument

d_utf8 <- data.frame(d$Reaction, d$Days, d$Subject)
names(d_utf8) <- c("R\u00e9action", "\u65e5\u6570", "Sujet")

# duplicated column name: lme4 (model.frame) uses the first "Days"
d_dup <- cbind(d[c("Reaction", "Days", "Subject")], Days = rev(d$Days))

# dates: Date is days since 1970-01-01, POSIXct seconds since the epoch
d_dates <- d[c("Reaction", "Days", "Subject")]
d_dates$date <- as.Date("2020-01-01") + d$Days
d_dates$stamp <- as.POSIXct("2020-01-01", tz = "UTC") + d$Days * 3600

k <- 2.5  # a variable of the calling code, seen by the formula through its environment

cases <- list(
  list(id = "lhs_minus", f = "Reaction - Days ~ Days + (1 | Subject)"),
  list(id = "lhs_log_minus", f = "log(Reaction) - 1 ~ Days + (1 | Subject)"),
  list(id = "lhs_divide", f = "Reaction/1000 ~ Days + (1 | Subject)"),
  list(id = "lhs_times", f = "Reaction*2 ~ Days + (1 | Subject)"),
  list(id = "lhs_plus", f = "Reaction + 1 ~ Days + (1 | Subject)"),
  list(id = "in_operator", f = "Reaction ~ Days %in% Subject + (1 | Subject)"),
  list(id = "dotted_in_call", f = "log(react.time + 1) ~ I(days.1^2) + sqrt(days.1) + (1 | Subject)"),
  list(id = "non_ascii", f = "R\u00e9action ~ \u65e5\u6570 + (\u65e5\u6570 | Sujet)", data = "utf8"),
  list(id = "offset_in_formula", f = "Reaction ~ Days + offset(20 * log(Days + 1)) + (1 | Subject)"),
  list(id = "offset_both", f = "Reaction ~ Days + offset(20 * log(Days + 1)) + (1 | Subject)", offset = TRUE),
  list(id = "compare_gt", f = "Reaction ~ I(Days > 4) + (1 | Subject)"),
  list(id = "compare_eq", f = "Reaction ~ Days + I(Days == 3) + (1 | Subject)"),
  # lme4's findbars takes the '|' inside I() for a random-effects bar and fails; the same
  # column by De Morgan fits, and stats' model.matrix() gives R's names for the '|' form
  list(id = "logic", f = "Reaction ~ I(Days > 2 & Days < 7) + I(!(Days >= 2 & Days <= 8)) + (1 | Subject)",
       same_as = "Reaction ~ I(Days > 2 & Days < 7) + I(Days < 2 | Days > 8) + (1 | Subject)"),
  list(id = "logic_not", f = "Reaction ~ Days + I(!(Days > 4)) + (1 | Subject)"),
  list(id = "poly_raw", f = "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)"),
  list(id = "poly_raw_T", f = "Reaction ~ poly(Days, degree = 3, raw = T) + (1 | Subject)"),
  list(id = "poly_orthogonal", f = "Reaction ~ poly(Days, 3) + (1 | Subject)"),
  list(id = "factor_levels", f = "Reaction ~ factor(Days %/% 3, levels = c(3, 2, 1, 0)) + (1 | Subject)"),
  list(id = "ifelse_character", f = "Reaction ~ ifelse(Days > 4, \"late\", \"early\") + (1 | Subject)"),
  list(id = "ifelse_numeric", f = "Reaction ~ ifelse(Days > 4, Days, 0) + (1 | Subject)"),
  list(id = "cut_n", f = "Reaction ~ cut(Days, 3) + (1 | Subject)"),
  list(id = "cut_breaks", f = "Reaction ~ cut(Days, breaks = c(-1, 2, 5, 9)) + (1 | Subject)"),
  list(id = "pmin_pmax", f = "Reaction ~ pmin(Days, 5) + pmax(Days, 3) + (1 | Subject)"),
  list(id = "as_numeric", f = "Reaction ~ as.numeric(Days) + (1 | Subject)"),
  list(id = "as_factor", f = "Reaction ~ as.factor(Days) + (1 | Subject)"),
  list(id = "scale", f = "Reaction ~ scale(Days) + (1 | Subject)"),
  list(id = "scale_center_only", f = "Reaction ~ scale(Days, center = TRUE, scale = FALSE) + (1 | Subject)"),
  list(id = "comment", f = "Reaction ~ Days + (1 | Subject) # Days as a number"),
  list(id = "caller_variable", f = "Reaction ~ I(Days * k) + (1 | Subject)"),
  list(id = "duplicate_column", f = "Reaction ~ Days + (1 | Subject)", data = "dup"),
  list(id = "date_covariate", f = "Reaction ~ date + (1 | Subject)", data = "dates"),
  list(id = "posixct_covariate", f = "Reaction ~ stamp + (1 | Subject)", data = "dates")
)
# predictions on new data: poly() and scale() keep the fitting data's coefficients (R's
# makepredictcall), factor() its levels, offset() terms are evaluated on the new data
newdata <- data.frame(Days = c(0.5, 3, 11), Subject = factor("308", levels = levels(d$Subject)))
predicted <- c("poly_orthogonal", "scale", "offset_in_formula", "factor_levels", "caller_variable", "compare_gt")
out <- list()
for (s in cases) {
  data <- switch(if (is.null(s$data)) "plain" else s$data,
                 plain = d, utf8 = d_utf8, dup = d_dup, dates = d_dates)
  fo <- as.formula(s$f)
  m <- if (isTRUE(s$offset)) lmer(fo, data = data, offset = off_arg) else lmer(fo, data = data)
  fe <- fixef(m)
  out[[s$id]] <- list(formula = s$f, REML = TRUE, remlcrit = unname(REMLcrit(m)),
                      fixef = as.list(fe), fixef_names = names(fe), theta = unname(getME(m, "theta")),
                      sigma = sigma(m), printed_formula = deparse(formula(m)),
                      messages = m@optinfo$conv$lme4$messages)
  if (s$id %in% predicted) {
    nd <- if (s$id == "factor_levels") transform(newdata, Days = c(0, 4, 9)) else newdata
    out[[s$id]]$newdata_days <- nd$Days
    out[[s$id]]$predict_newdata <- unname(predict(m, newdata = nd))
  }
  if (!is.null(s$same_as))
    out[[s$id]]$same_as <- list(formula = s$same_as,  # stats' model.matrix: no bars to find
                                fixef_names = colnames(model.matrix(~ I(Days > 2 & Days < 7) + I(Days < 2 | Days > 8), data)))
}
# R's numbers for dates: the first rows' date and stamp
out$dates_as_numbers <- list(date = as.numeric(d_dates$date[1:3]), stamp = as.numeric(d_dates$stamp[1:3]))
# lme4 on a 2,000-term formula: R's parser or model.frame runs out of C stack
long <- paste("Reaction ~", paste(rep("Days", 2000), collapse = " + "), "+ (1 | Subject)")
out$long_formula_lme4 <- tryCatch({lmer(as.formula(long), d); "fits"}, error = function(e) conditionMessage(e))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(args[2], "refs.json"))
