"""How many BLAS threads a fit uses: sized to the work and to the cores that are free.

Why: OpenBLAS starts one thread per core and its threads spin-wait between calls.  Beside
another numerical process (a second notebook, a joblib or Dask worker, pytest-xdist) the
threads of both processes fight for the same cores, and every parallel call waits for a thread
that is not running: InstEval's fit went from 0.65 s to 44 s on two cores.  One thread per
process avoids that; several threads help only for large dense blocks on cores nobody else uses.

The rule (:func:`blas_threads_for_fit` decides once per fit, and the limit holds for the whole
fit, since each change of the limit costs microseconds):

- ``LmerControl(blas_threads=k)`` with an integer k: k threads, as asked.
  ``blas_threads="inherit"``: BLAS is left as the process has it (lmmpy's old behaviour).
- Otherwise (``blas_threads=None``, the default) the fit never raises a limit the user set --
  ``OPENBLAS_NUM_THREADS`` and the like, or their own ``threadpool_limits`` (seen as the BLAS
  libraries' current thread count) -- and uses

      1                                     if m < MULTITHREAD_MIN_ORDER,
      max(1, min(cap, cores, floor(idle)))  otherwise,

  where m = q_tail + p + 1 is the order of the dense tail block (each evaluation factors and
  inverts it: m^3 / 3 flops each), cap the user's limit, cores the CPUs this process may run
  on (``os.sched_getaffinity``, and a cgroup CPU quota), and idle how many of those cores other
  processes left unused over IDLE_SAMPLE_SECONDS at the start of the fit (``/proc/stat``:
  idle ticks plus this process's own; ``os.getloadavg`` where there is no /proc/stat; 1
  thread where neither exists).  Small models, with their many small calls that more threads
  only slow down, always get 1 thread and sample nothing.
- :func:`single_blas_thread` makes a worker process (the bootstrap's ``n_jobs``) use 1 thread:
  the workers are the parallelism.

A fit nested in another (``optimize_lmer`` inside ``lmer``, the bootstrap's refits), or started
in another Python thread while one fit holds the limit, runs under that limit and changes
nothing: the BLAS thread count is one setting for the whole process, so only the outermost fit
sets it, and restores it when it ends (a fit in another thread that is still running then goes
on with the process's own setting).
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager

from ..errors import LmmError

# Dense tail blocks of this order and more are worth several threads (where cores are idle):
# below it OpenBLAS's Cholesky and inverse gain little or nothing from a second thread
# (bench/README.md, "BLAS threads").
MULTITHREAD_MIN_ORDER = 512
# /proc/stat counts in ticks of 10 ms; over 20 ms two cores give 4 ticks, so a busy core
# shows clearly and the sample costs a few percent of a fit that is large enough to ask.
IDLE_SAMPLE_SECONDS = 0.02
# environment variables that limit the BLAS libraries numpy and scipy may load
THREAD_ENV_VARS = (
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
INHERIT = "inherit"

_controller = None
_state_lock = threading.Lock()
_holder = None  # the thread whose fit holds lmmpy's BLAS limit, if any


def blas_controller():
    """The BLAS libraries loaded in this process (threadpoolctl), found once: a new
    ThreadpoolController scans the loaded libraries (milliseconds); changing its limits
    costs microseconds."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def current_blas_threads():
    """The BLAS libraries' thread count now (the lowest if they differ); None without BLAS."""
    counts = [lib.get_num_threads() for lib in blas_controller().lib_controllers]
    return min(counts) if counts else None


def env_thread_limit(environ=None):
    """The lowest positive thread count set in the BLAS environment variables, or None."""
    environ = os.environ if environ is None else environ
    limits = []
    for name in THREAD_ENV_VARS:
        value = str(environ.get(name, "")).strip().split(",")[0]  # OMP_NUM_THREADS may be "4,2"
        if value.isdigit() and int(value) > 0:
            limits.append(int(value))
    return min(limits) if limits else None


def user_thread_cap():
    """The user's own limit, which a fit never raises: the environment variables and the
    BLAS libraries' current thread count (an enclosing ``threadpool_limits``)."""
    limits = [n for n in (env_thread_limit(), current_blas_threads()) if n is not None]
    return min(limits) if limits else None


def _cgroup_cpu_quota():
    """Cores allowed by a cgroup CPU quota (v2 cpu.max or v1 cfs_quota_us), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                quota = f.read().strip()
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period = f.read().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, q // p) if q > 0 and p > 0 else None


def usable_cpus():
    """The CPU numbers this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def usable_cores(cpus=None):
    """How many cores this process may use: its CPU affinity, capped by a cgroup quota."""
    n = len(usable_cpus() if cpus is None else cpus)
    quota = _cgroup_cpu_quota()
    return min(n, quota) if quota else n


def _cpu_ticks(cpus: Iterable[int]) -> tuple[int, int]:
    """(idle, total) ticks summed over ``cpus`` from /proc/stat (idle includes iowait; total
    includes steal, time the hypervisor gave to other machines)."""
    wanted = {f"cpu{c}" for c in cpus}
    idle = total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            fields = line.split()
            if fields[0] in wanted:
                # user nice system idle iowait irq softirq steal (guest time is inside user)
                ticks = [int(v) for v in fields[1:9]]
                idle += ticks[3] + ticks[4]
                total += sum(ticks)
    return idle, total


def _own_ticks() -> int:
    """CPU ticks used by this process's threads so far (utime + stime of /proc/self/stat)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cores(cpus=None, seconds: float = IDLE_SAMPLE_SECONDS):
    """How many of ``cpus`` other processes left unused over the next ``seconds``: idle time
    plus this process's own (its BLAS threads may still spin from an earlier call; they are
    the ones being sized), from /proc/stat; where there is none, the cores less the 1-minute
    load average; None where neither exists."""
    cpus = usable_cpus() if cpus is None else cpus
    try:
        idle0, total0, own0 = *_cpu_ticks(cpus), _own_ticks()
        time.sleep(seconds)
        idle1, total1, own1 = *_cpu_ticks(cpus), _own_ticks()
        if total1 > total0:
            free = (idle1 - idle0) + (own1 - own0)
            return min(len(cpus), len(cpus) * free / (total1 - total0))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return max(0.0, len(cpus) - os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def dense_tail_order(sizes, p: int) -> int:
    """m, the order of the dense tail block of the blocked factor: the random-effect columns of
    every term but the leading one (``sizes``: (levels, k) per term, leading term first), X's
    p columns and y."""
    return sum(levels * k for levels, k in sizes[1:]) + p + 1


def decide_blas_threads(dense_order: int, cores: int, idle, cap=None) -> int:
    """The rule (pure): 1 thread for a dense tail block of order below MULTITHREAD_MIN_ORDER;
    otherwise as many as there are idle cores, at most ``cores`` and the user's ``cap``, at
    least 1.  ``idle`` None (unknown) gives 1."""
    if dense_order < MULTITHREAD_MIN_ORDER or idle is None:
        return 1
    n = min(int(cores), math.floor(idle + 1e-9))
    if cap is not None:
        n = min(n, int(cap))
    return max(1, n)


def check_blas_threads_request(request):
    """``LmerControl.blas_threads``: None (the rule), a positive int, or "inherit"."""
    if request is None or request == INHERIT:
        return request
    if isinstance(request, bool) or not isinstance(request, int) or request < 1:
        raise LmmError(
            f"blas_threads must be None (lmmpy's rule), a positive integer or "
            f"'{INHERIT}' (leave BLAS as it is), not {request!r}"
        )
    return request


def choose_blas_threads(dense_order: int, request=None):
    """The BLAS threads for a fit whose dense tail block has order ``dense_order``: the rule
    of the module docstring, or ``request``; None leaves BLAS as it is."""
    request = check_blas_threads_request(request)
    if request == INHERIT:
        return None
    if request is not None:
        return request
    cap = user_thread_cap()
    if dense_order < MULTITHREAD_MIN_ORDER or (cap is not None and cap <= 1):
        return 1  # nothing to sample
    cpus = usable_cpus()
    cores = usable_cores(cpus)
    if cores <= 1:
        return 1
    return decide_blas_threads(dense_order, cores, idle_cores(cpus), cap)


@contextmanager
def blas_threads_for_fit(dense_order: int, request=None):
    """Run a fit with the BLAS threads :func:`choose_blas_threads` gives, restoring them after.
    Inside another fit's limit (this thread's or another's) nothing changes; yields the
    number of threads set, or None where it set none."""
    global _holder
    with _state_lock:
        if _holder is not None:
            held_elsewhere = True
        else:
            held_elsewhere = False
            _holder = threading.get_ident()
    if held_elsewhere:
        yield None
        return
    try:
        threads = choose_blas_threads(dense_order, request)
        if threads is None or not blas_controller().lib_controllers:
            yield None
        else:
            with blas_controller().limit(limits=threads, user_api="blas"):
                yield threads
    finally:
        with _state_lock:
            _holder = None


def with_fit_blas_threads(func):
    """Decorator for a function of a fitted model (first argument ``fit``, with ``fit.model``)
    that refits or evaluates it many times (profiles): one limit for the whole call, sized to
    that model by the rule."""

    @functools.wraps(func)
    def under_limit(fit, *args, **kwargs):
        with blas_threads_for_fit(dense_tail_order(fit.model.sizes, fit.model.p)):
            return func(fit, *args, **kwargs)

    return under_limit


def single_blas_thread():
    """Use one BLAS thread from now on, for the rest of this process: for worker processes
    (a Pool's initializer), whose parallelism is the workers themselves."""
    if blas_controller().lib_controllers:
        blas_controller().limit(limits=1, user_api="blas")
