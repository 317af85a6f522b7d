"""Where polc's vector evaluator spends time and memory on the anchor v2 workload, phase by phase.

    python bench/polc_phases.py --n 5000000 [--work bench/.work]       (prints one JSON document)

Wraps the vector evaluator's internal steps (policy_lang/vector.py, private names: a step that no longer
exists is skipped) with wall-clock timers — no profiler overhead — and times one evaluation after a warm-up
run. Times are inclusive (a step's time contains the steps it calls). Then, in the same process, one more
evaluation under tracemalloc records the traced (NumPy) memory when each top-level step starts and its peak.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import json
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--work", default=str(HERE / ".work"))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import polc_anchor as PA

    C = PA._anchor(Path(a.work))
    from policy_lang import vector as V

    d = C.load(a.n)
    built, _, _ = PA.build_policy()
    cols = PA.to_columns(d)
    graph = built.graph
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
    print(json.dumps({"n": a.n, "claims": m, "persons": cols.persons.n, "total_s": total, "steps": steps,
                      "memory": mem, "result_bytes": held}))


if __name__ == "__main__":
    main()
