"""polc on the peer benchmark's v2 workload (shared/bench-anchor), on the anchor's own data files.

    python bench/polc_anchor.py --n 1000000 --engine vector --repeats 9 [--work bench/.work]

Loads the anchor's `data/pop_N.npz` (common.load), converts it to polc's input (untimed, like the peers'
input preparation: `Columns` for the vector evaluator, a `Dataset` of records for the reference
evaluator), builds bench/anchor_v2.pol (load+check and compile timed apart), then times the evaluation
(`vector.run_columns`, which sorts the claims by (person, date, claim id) itself, or `interp.run`) for
R repeats and takes the median. The per-person totals of L1, L2, L3 and out-of-pocket over all N persons
are fingerprinted exactly as common.fingerprint does and appended to the anchor's results.jsonl, so the
report can compare them with NumPy's.

Mapping (anchor -> polc): every person is a `resident`; `enrol_level` (the declared person column) is
level+1; cat 1/2 are the identities dibao/tekun, granted for the whole year; a claim is an inpatient claim
on 2024-01-01 + c_day at hospital level c_level+1 with total = eligible = c_cost fen. Claim ids are the
anchor's integer c_id. For the vector evaluator they stay an int64 column (the compact form of the
zero-padded text ids "0000042": same order, no string column); the reference evaluator gets them rendered
as zero-padded text, so both orders equal the anchor's numeric (person, day, c_id) order.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POLICY = HERE / "anchor_v2.pol"
OUT = ("L1", "L2", "L3", "OOP")
LAYERS = ("basic", "critical_illness", "assistance")
IDENTITIES = ("dibao", "tekun")  # anchor cat codes 1, 2
YEAR_START = datetime.date(2024, 1, 1)


def _anchor(work: Path):
    sys.path.insert(0, str(work))
    import common  # the anchor's common.py, copied into the work directory

    return common


def to_columns(d: dict[str, np.ndarray], claim_ids: str = "int"):
    """Anchor arrays -> polc Columns (no Python object per row)."""
    from policy_lang.columns import KINDS, SCHEMES, Claims, Columns, Extra, Persons, day_number

    n = int(d["n"])
    m = int(d["c_cost"].size)
    cat = d["cat"]
    granted = np.flatnonzero(cat > 0)
    persons = Persons(
        person_id=None,
        scheme=np.full(n, SCHEMES.index("resident"), dtype=np.int8),
        retired=np.zeros(n, dtype=bool),
        age=np.full(n, -1, dtype=np.int16),
        sex=np.zeros(n, dtype=np.int8),
        region=np.full(n, -1, dtype=np.int32),
        region_names=(),
        resettled=np.zeros(n, dtype=bool),
        grant_person=granted.astype(np.int32),
        grant_identity=(cat[granted].astype(np.int16) - 1),
        grant_since=np.full(granted.size, np.iinfo(np.int32).min, dtype=np.int32),  # held all along
        chronic_person=np.zeros(0, dtype=np.int32),
        chronic_disease=np.zeros(0, dtype=np.int32),
        extra={"enrol_level": Extra(d["level"].astype(np.int64) + 1, np.zeros(n, dtype=bool))},
    )
    if claim_ids == "int":
        ids = d["c_id"].astype(np.int64)
    else:  # zero-padded text: the same order as the integers
        width = len(str(max(m - 1, 0)))
        ids = np.char.zfill(d["c_id"].astype(str), width)
    cost = d["c_cost"].astype(np.int64)
    claims = Claims(
        claim_id=ids,
        person=d["c_person"].astype(np.int32),
        day=(day_number(YEAR_START) + d["c_day"].astype(np.int32)).astype(np.int32),
        kind=np.full(m, KINDS.index("inpatient"), dtype=np.int8),
        level=(d["c_level"] + 1).astype(np.int8),
        total_cost=cost,
        eligible_cost=cost,  # the same array: total = eligible
        tcm_cost=np.zeros(m, dtype=np.int64),
        material_over_limit=np.zeros(m, dtype=np.int64),
        bed_days=np.zeros(m, dtype=np.int32),
        grassroots=np.zeros(m, dtype=bool),
        tcm_institution=np.zeros(m, dtype=bool),
        referred=np.zeros(m, dtype=bool),
        in_province=np.ones(m, dtype=bool),
        in_pooling_area=np.ones(m, dtype=bool),
        direct_settlement=np.ones(m, dtype=bool),
        emergency=np.zeros(m, dtype=bool),
        pure_tcm=np.zeros(m, dtype=bool),
        designation=np.zeros(m, dtype=np.int8),
        disease_claim=np.zeros(0, dtype=np.int32),
        disease_code=np.zeros(0, dtype=np.int32),
    )
    cols = Columns(persons, claims, IDENTITIES, ())
    cols.check()
    return cols


def to_dataset(d: dict[str, np.ndarray]):
    """Anchor arrays -> polc records (for the reference evaluator)."""
    from policy_lang.data import Claim, Dataset, Grant, Person

    n = int(d["n"])
    m = int(d["c_cost"].size)
    width = len(str(max(m - 1, 0)))
    levels = (d["level"].astype(np.int64) + 1).tolist()
    cats = d["cat"].tolist()
    grants = {0: (), 1: (Grant("dibao", None),), 2: (Grant("tekun", None),)}
    persons = tuple(Person(str(i), "resident", identities=grants[cats[i]], extra={"enrol_level": levels[i]})
                    for i in range(n))
    dates = [YEAR_START + datetime.timedelta(days=k) for k in range(366)]
    claims = tuple(Claim(f"{cid:0{width}d}", str(p), dates[day], "inpatient", lvl + 1, cost, cost)
                   for cid, p, day, lvl, cost in zip(d["c_id"].tolist(), d["c_person"].tolist(),
                                                     d["c_day"].tolist(), d["c_level"].tolist(),
                                                     d["c_cost"].tolist(), strict=True))
    return Dataset(persons, claims)


def build_policy():
    """bench/anchor_v2.pol: (Built, load+check seconds, compile seconds)."""
    from policy_lang.check import check
    from policy_lang.compile import compile_policy
    from policy_lang.load import load_program
    from policy_lang.pipeline import Built

    t = time.perf_counter()
    checked = check(load_program(POLICY))
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    graph = compile_policy(checked)
    t_compile = time.perf_counter() - t
    return Built(checked, graph), t_check, t_compile


def fingerprint_vector(result, n: int) -> dict:
    """common.fingerprint of the per-person L1, L2, L3 and out-of-pocket totals, built one array at a time from
    the evaluator's person-year rows (the harness adds one n-sized array at a time, where the peers' results hold
    all four), each layer's total checked against the sum of the claims' own payments."""
    import hashlib

    layers = list(result.layers)
    columns = [result.py_payments[:, layers.index(name)] for name in LAYERS] + [result.py_out_of_pocket]
    claims = [result.payments[:, layers.index(name)] for name in LAYERS] + [result.out_of_pocket]
    out, digest = {}, hashlib.sha256()
    for name, rows, own in zip(OUT, columns, claims, strict=True):
        total = np.zeros(n, np.int64)
        np.add.at(total, result.py_person, rows)
        out["total_" + name] = int(total.sum())
        assert out["total_" + name] == int(own.sum()), f"person-year rows of {name} differ from the claims' sum"
        digest.update(memoryview(total))
        del total
    out["sha256_per_person"] = digest.hexdigest()[:16]  # as common.fingerprint: the four arrays' bytes in order
    return out


def per_person_interp(result, layers: tuple[str, ...], n: int) -> dict[str, np.ndarray]:
    idx = [layers.index(name) for name in LAYERS]
    person = np.fromiter((int(c.person_id) for c in result.claims), np.int64, len(result.claims))
    pay = np.array([c.payments for c in result.claims], dtype=np.int64).reshape(len(result.claims), -1)
    oop = np.fromiter((c.out_of_pocket for c in result.claims), np.int64, len(result.claims))
    per_claim = {k: pay[:, i] for k, i in zip(OUT, idx, strict=False)}
    per_claim["OOP"] = oop
    out = {}
    for k, v in per_claim.items():
        tot = np.zeros(n, np.int64)
        np.add.at(tot, person, v)
        out[k] = tot
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--engine", choices=["vector", "interp"], default="vector")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", default=str(HERE / ".work"), help="the anchor's copy (data/, results.jsonl)")
    ap.add_argument("--claim-ids", choices=["int", "text"], default="int",
                    help="vector: claim ids as an int64 column (default) or zero-padded text")
    ap.add_argument("--no-record", action="store_true", help="print the row, do not append to results.jsonl")
    ap.add_argument("--profile", metavar="FILE",
                    help="after the timed repeats, profile one more evaluation with cProfile into FILE")
    ap.add_argument("--trace-memory", action="store_true",
                    help="after the timed repeats, one more evaluation under tracemalloc: peak of traced bytes")
    ap.add_argument("--setup-only", action="store_true",
                    help="imports, data, policy and input conversion, no evaluation (the peak-RSS baseline)")
    a = ap.parse_args()
    C = _anchor(Path(a.work))
    from policy_lang import interp, vector

    t = time.perf_counter()
    d = C.load(a.n)
    load_s = time.perf_counter() - t
    n, m = int(d["n"]), int(d["c_cost"].size)
    built, t_check, t_compile = build_policy()
    graph = built.graph
    t = time.perf_counter()
    data = to_columns(d, a.claim_ids) if a.engine == "vector" else to_dataset(d)
    prep_s = time.perf_counter() - t
    if a.engine == "vector":  # the compiled kernel loaded (JIT excluded, as the peers exclude theirs)
        vector.run_columns(graph, to_columns(C.generate(1000, seed=1), a.claim_ids))
    if a.setup_only:
        print(f"setup only: n={n} claims={m} check={t_check:.3f}s compile={t_compile:.4f}s prep={prep_s:.3f}s")
        return
    evaluate = ((lambda: vector.run_columns(graph, data)) if a.engine == "vector"
                else (lambda: interp.run(graph, data)))
    from policy_lang import kernel

    times: list[float] = []
    phases: list[dict[str, float]] = []
    res = None
    for _ in range(a.repeats):
        res = None  # free the previous outputs first (peak RSS), as the peers do
        gc.collect()
        t = time.perf_counter()
        res = evaluate()
        times.append(time.perf_counter() - t)
        if a.engine == "vector" and kernel.TIMINGS and not kernel.HANDOVER:
            phases.append(dict(kernel.TIMINGS))
    extra: dict[str, object] = {}
    if a.profile:
        import cProfile

        res = None
        gc.collect()
        prof = cProfile.Profile()
        res = prof.runcall(evaluate)
        prof.dump_stats(a.profile)
    if a.trace_memory:
        import tracemalloc

        res = None
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        res = evaluate()
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        extra.update(traced_peak_bytes=peak - base, traced_result_bytes=held - base)
    extra["kernel"] = {k: C.median([p[k] for p in phases]) for k in phases[0]} if phases else None
    extra["threads"] = kernel.threads() if a.engine == "vector" else 1
    if a.engine == "vector":
        prints = fingerprint_vector(res, n)
        if phases:  # the kernel's own (partition and per-block) sort, inside the timed evaluations
            sort_s = C.median([p["sort"] for p in phases])
        else:  # the NumPy engine's sort (the same composite key), outside the timing
            t = time.perf_counter()
            vector._claim_order(data.claims.person, data.claims.day, vector._id_rank(data.claims.claim_id, m))
            sort_s = time.perf_counter() - t
    else:
        prints = C.fingerprint(per_person_interp(res, tuple(layer.id for layer in graph.layers), n))
        sort_s = 0.0
    row = {"impl": f"polc_{a.engine}" + ("" if a.claim_ids == "int" or a.engine == "interp" else "_textids"),
           "version": "v2", "n": a.n, "claims": m,
           "calc_s_median": C.median(times) if times else None, "calc_s_all": times, "build_s": 0.0, "sort_s": sort_s,
           "check_s": t_check, "compile_s": t_compile, "prep_s": prep_s, "load_s": load_s,
           "pid": os.getpid(), **extra, **prints}
    if a.no_record:
        import json

        print(json.dumps(row))
    else:
        C.record(row)


if __name__ == "__main__":
    main()
