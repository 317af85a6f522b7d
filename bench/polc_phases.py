"""Where polc's vector evaluator spends time and memory on the anchor v2 workload, phase by phase.

    python bench/polc_phases.py --n 5000000 [--work bench/.work] [--numpy]      (prints one JSON document)

The fused kernel (policy_lang/kernel.py, what `vector.run_columns` runs): its own phase timers (kernel.TIMINGS),
median of 5 evaluations after a warm-up, on every thread and on one (POLC_THREADS=1), and the process's
resident memory at the end of each phase.

--numpy: also the NumPy engine (POLC_KERNEL=0): its internal steps (policy_lang/vector.py, private names: a
step that no longer exists is skipped) wrapped with wall-clock timers (inclusive), then one more evaluation
under tracemalloc recording the traced memory when each top-level step starts and its peak.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

TIMED = {
    "": ["_claim_order", "_id_rank", "_segments", "_solve_caps", "_increments", "_previous", "_years", "_distinct"],
    "_Engine": ["__init__", "run", "_layer_step", "_modes", "_selection", "in_scope", "base", "_outputs",
                "_claim_epochs", "_alerts", "_subsidies"],
    "_ClaimFrame": ["__init__"],
    "_YearFrame": ["__init__"],
    "_LayerRun": ["over", "__init__", "settle", "_core", "_finish", "_keyed_before", "_exact", "_pricing",
                  "_tiers", "_flat"],
    "_Segs": ["excl_cumsum", "incl_cumsum"],
}
MEMORY = {"_Engine": ["__init__", "_layer_step", "_outputs"]}


def _patch(module: Any, table: dict[str, list[str]], make: Any) -> list[tuple[Any, str, Any]]:
    undo = []
    for owner_name, names in table.items():
        owner = getattr(module, owner_name, None) if owner_name else module
        if owner is None:
            continue
        for name in names:
            f = getattr(owner, name, None)
            if f is None:
                continue
            label = f"{owner_name}.{name}" if owner_name else name
            setattr(owner, name, make(f, label))
            undo.append((owner, name, f))
    return undo


def _unpatch(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, name, f in reversed(undo):
        setattr(owner, name, f)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def kernel_phases(graph: Any, cols: Any) -> dict[str, Any]:
    """kernel.TIMINGS (median of 5) on every thread and on one, and the resident memory after each phase."""
    from policy_lang import kernel as K
    from policy_lang import vector as V

    def median_phases(threads: str | None) -> dict[str, float]:
        saved = os.environ.pop("POLC_THREADS", None)
        if threads is not None:
            os.environ["POLC_THREADS"] = threads
        runs = []
        for _ in range(5):
            gc.collect()
            V.run_columns(graph, cols)
            runs.append(dict(K.TIMINGS))
        os.environ.pop("POLC_THREADS", None)
        if saved is not None:
            os.environ["POLC_THREADS"] = saved
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    V.run_columns(graph, cols)  # warm-up
    every, one = median_phases(None), median_phases("1")
    rss: dict[str, int] = {}
    lap = K._Clock.lap

    def noted(clock: Any, name: str) -> None:
        lap(clock, name)
        rss[name] = _rss()

    K._Clock.lap = noted  # type: ignore[method-assign]
    gc.collect()
    before = _rss()
    V.run_columns(graph, cols)
    K._Clock.lap = lap  # type: ignore[method-assign]
    return {"threads": K.threads(), "rss_before": before,
            "phases": [{"phase": k, "s": every[k], "s_1thread": one[k], "rss": rss.get(k)} for k in every],
            "total_s": sum(every.values()), "total_1thread_s": sum(one.values())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--work", default=str(HERE / ".work"))
    ap.add_argument("--numpy", action="store_true", help="also profile the NumPy engine (POLC_KERNEL=0)")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import polc_anchor as PA

    C = PA._anchor(Path(a.work))
    d = C.load(a.n)
    built, _, _ = PA.build_policy()
    cols = PA.to_columns(d)
    out: dict[str, Any] = {"n": a.n, "claims": cols.claims.m, "persons": cols.persons.n,
                           "kernel": kernel_phases(built.graph, cols)}
    if a.numpy:
        os.environ["POLC_KERNEL"] = "0"
        out.update(numpy_steps(built.graph, cols))
    print(json.dumps(out))


def numpy_steps(graph: Any, cols: Any) -> dict[str, Any]:
    """The NumPy engine's steps: wall-clock timers, then traced memory per top-level step."""
    from policy_lang import vector as V

    m = cols.claims.m
    V.run_columns(graph, cols)  # warm-up

    acc: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()

    def timer(f: Any, label: str) -> Any:
        @functools.wraps(f)
        def g(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                acc[label] += time.perf_counter() - t
                calls[label] += 1
        return g

    undo = _patch(V, TIMED, timer)
    gc.collect()
    t = time.perf_counter()
    V.run_columns(graph, cols)
    total = time.perf_counter() - t
    _unpatch(undo)
    steps = [{"step": k, "calls": calls[k], "s": v, "share": v / total}
             for k, v in sorted(acc.items(), key=lambda kv: -kv[1])]

    mem: list[dict[str, Any]] = []

    def tracer(f: Any, label: str) -> Any:
        @functools.wraps(f)
        def g(*args: Any, **kw: Any) -> Any:
            start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            out = f(*args, **kw)
            end, peak = tracemalloc.get_traced_memory()
            mem.append({"step": label, "start": start, "peak": peak, "end": end})
            return out
        return g

    undo = _patch(V, MEMORY, tracer)
    gc.collect()
    tracemalloc.start()
    res = V.run_columns(graph, cols)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    _unpatch(undo)
    del res
    return {"total_s": total, "steps": steps, "memory": mem, "result_bytes": held, "claims_numpy": m}


if __name__ == "__main__":
    main()
