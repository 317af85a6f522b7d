"""Experiment: polc's vector evaluator on the anchor v2 data cut into blocks of persons.

    python bench/polc_blocks.py --n 5000000 --block 100000 [--check] [--repeats 3]

Groups the claims by person (an argsort, timed), cuts persons into blocks of --block and calls
`vector.run_columns` once per block. This is the chunking RESULTS.md proposes for run_columns itself.
Run it under `/usr/bin/time -v` for the peak RSS. With --check it also makes one whole call and asserts
that the payments are identical, which raises the peak to the whole call's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import attrs
import numpy as np

HERE = Path(__file__).resolve().parent
CLAIM_ROWS = ("claim_id", "day", "kind", "level", "total_cost", "eligible_cost", "tcm_cost", "material_over_limit",
              "bed_days", "grassroots", "tcm_institution", "referred", "in_province", "in_pooling_area",
              "direct_settlement", "emergency", "pure_tcm", "designation")
PERSON_ROWS = ("scheme", "retired", "age", "sex", "region", "resettled")


def run_blocks(graph, cols, block: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    from policy_lang import vector
    from policy_lang.columns import Extra

    c, p = cols.claims, cols.persons
    order = np.argsort(c.person, kind="stable")
    person = c.person[order]
    bounds = np.arange(0, p.n + block, block)
    cuts = np.searchsorted(person, bounds)
    gcuts = np.searchsorted(p.grant_person, bounds)
    pay = np.empty((c.m, len(graph.layers)), np.int64)
    for k in range(len(bounds) - 1):
        lo, hi = int(bounds[k]), min(int(bounds[k + 1]), p.n)
        if lo >= p.n:
            break
        rows = order[cuts[k]:cuts[k + 1]]
        claims = attrs.evolve(c, **{f: getattr(c, f)[rows] for f in CLAIM_ROWS},
                              person=person[cuts[k]:cuts[k + 1]] - lo)
        g0, g1 = gcuts[k], gcuts[k + 1]
        persons = attrs.evolve(
            p, **{f: getattr(p, f)[lo:hi] for f in PERSON_ROWS},
            grant_person=p.grant_person[g0:g1] - lo, grant_identity=p.grant_identity[g0:g1],
            grant_since=p.grant_since[g0:g1],
            extra={name: Extra(e.values[lo:hi], e.missing[lo:hi], e.names) for name, e in p.extra.items()})
        pay[rows] = vector.run_columns(graph, attrs.evolve(cols, persons=persons, claims=claims)).payments
    return pay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--block", type=int, default=100_000, help="persons per block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="compare with one whole call (raises the peak)")
    ap.add_argument("--work", default=str(HERE / ".work"))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import polc_anchor as PA

    C = PA._anchor(Path(a.work))
    d = C.load(a.n)
    built, _, _ = PA.build_policy()
    cols = PA.to_columns(d)
    times = []
    pay = None
    for _ in range(a.repeats):
        pay = None
        t = time.perf_counter()
        pay = run_blocks(built.graph, cols, a.block)
        times.append(time.perf_counter() - t)
    if a.check:
        from policy_lang import vector

        assert np.array_equal(pay, vector.run_columns(built.graph, cols).payments), "blocks differ from one call"
    t = C.median(times)
    print(f"N={a.n:,} claims={cols.claims.m:,} blocks of {a.block:,} persons: {t:.3f} s median "
          f"({cols.claims.m / t / 1e6:.2f} M claims/s){'; payments identical to one call' if a.check else ''}")


if __name__ == "__main__":
    main()
