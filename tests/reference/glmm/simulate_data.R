# Simulates the small data sets used by models.tsv here (written to ./data/ as CSV).
# usage: Rscript simulate_data.R OUT_DIR     (OUT_DIR default: data)
# Each block has its own set.seed, so any one can be regenerated on its own.
args <- commandArgs(TRUE)
out <- if (length(args)) args[1] else "data"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
w <- function(d, name) write.csv(d, file.path(out, paste0(name, ".csv")), row.names = FALSE)

# 1. Poisson counts with an exposure (person-time): y ~ Pois(exposure * exp(-1 + 0.4 x + u_site)), sd(u) = 0.5
set.seed(101)
nsite <- 40; per <- 10
site <- rep(sprintf("s%02d", 1:nsite), each = per)
u <- rnorm(nsite, 0, 0.5)[rep(1:nsite, each = per)]
x <- round(rnorm(nsite * per), 4)
exposure <- round(runif(nsite * per, 0.5, 20), 3)
y <- rpois(nsite * per, exposure * exp(-1 + 0.4 * x + u))
w(data.frame(site, x, exposure, y), "exposure_counts")

# 2. Positive continuous response, Gamma with log link: mean exp(1 + 0.5 x + u_g), shape 4, sd(u) = 0.3
set.seed(202)
ng <- 30; per <- 15
g <- rep(sprintf("g%02d", 1:ng), each = per)
u <- rnorm(ng, 0, 0.3)[rep(1:ng, each = per)]
x <- round(runif(ng * per, -1, 1), 4)
mu <- exp(1 + 0.5 * x + u)
y <- signif(rgamma(ng * per, shape = 4, rate = 4 / mu), 6)
w(data.frame(g, x, y), "gamma_positive")

# 3. Two-level string response ("alive"/"dead"; R's factor makes "alive" the first level = failure, so
#    glmer models P(dead)), a two-level string treatment and a covariate, 50 clinics x 12 patients
set.seed(303)
nc <- 50; per <- 12
clinic <- rep(sprintf("c%02d", 1:nc), each = per)
u <- rnorm(nc, 0, 0.8)[rep(1:nc, each = per)]
treatment <- sample(c("control", "drug"), nc * per, replace = TRUE)
age <- round(rnorm(nc * per, 0, 1), 3)
eta <- -0.5 - 0.7 * (treatment == "drug") + 0.5 * age + u
status <- ifelse(runif(nc * per) < plogis(eta), "dead", "alive")
w(data.frame(clinic, treatment, age, status), "string_response")

# 4. Binary response with NO group effect (true sd 0): the glmer fit is singular (theta = 0)
set.seed(404)
ng <- 20; per <- 10
g <- rep(sprintf("g%02d", 1:ng), each = per)
x <- round(rnorm(ng * per), 4)
y <- rbinom(ng * per, 1, plogis(0.3 + 0.8 * x))
w(data.frame(g, x, y), "singular_binary")

# 5. Binomial counts (successes of n trials) with a random intercept and slope for x by g:
#    logit p = -0.5 + 0.6 x + a_g + b_g x, sd(a) = 0.7, sd(b) = 0.4, cor(a, b) = 0.3; 30 groups x 8
set.seed(505)
ng <- 30; per <- 8
g <- rep(sprintf("g%02d", 1:ng), each = per)
S <- matrix(c(0.49, 0.3 * 0.7 * 0.4, 0.3 * 0.7 * 0.4, 0.16), 2)
ab <- matrix(rnorm(2 * ng), ng) %*% chol(S)
x <- round(rep(seq(-1.5, 1.5, length.out = per), ng) + rnorm(ng * per, 0, 0.1), 4)
gi <- rep(1:ng, each = per)
n <- sample(5:20, ng * per, replace = TRUE)
succ <- rbinom(ng * per, n, plogis(-0.5 + 0.6 * x + ab[gi, 1] + ab[gi, 2] * x))
# x_shift = x + 100 and x_k = 1000 x give models equivalent to (x | g) (same optimum deviance), but on
# which lme4's optimizers stop short with convergence warnings
w(data.frame(g, x, n, succ, x_shift = x + 100, x_k = x * 1000), "binomial_slope")
