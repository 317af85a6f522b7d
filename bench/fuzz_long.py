"""Long fuzz run of polc (`--cases 100000 --workers 2`): the strategies of tests/fuzz, at length.

Every case is one input (a mutated bundled policy, a random token sequence, random bytes or mutated
example data) through one of `polc check`, `polc fmt`, `polc eval`, `pipeline.build` or
`fmt.format_source`, judged as tests/fuzz/test_fuzz_language.py judges it. Prints
`N cases, N failures`, the first failures with the seed that replays them
(`--replay SEED`), and appends the result and the command to bench/FUZZ.md (unless `--no-record`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzz.test_fuzz_language import (
    STRATEGIES,
    Case,
    Hang,
    RandomChooser,
    Workspace,
    run_case,
)

# Shares of the cases, as in CI: mutations of real policies reach every pass, so they get the most.
SHARES = {"mutation": 60, "tokens": 20, "bytes": 12, "data": 8}
RECORD = Path(__file__).resolve().parent / "FUZZ.md"

_workspace: Workspace | None = None


def gen(seed: int) -> Case:
    rng = random.Random(seed)
    strategy = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
    return STRATEGIES[strategy](RandomChooser(rng))


def one(seed: int) -> tuple[str, str, str]:
    """(strategy, outcome, detail) with outcome ok | fail."""
    global _workspace
    if _workspace is None:
        _workspace = Workspace(Path(tempfile.mkdtemp(prefix="polc-fuzz-")))
    case = gen(seed)
    try:
        run_case(_workspace, case)
    except (Exception, Hang) as exc:  # every failure is counted and shown, none stops the run
        return case.strategy, "fail", f"seed {seed}: {type(exc).__name__}: {str(exc)[:1500]}"
    return case.strategy, "ok", ""


def chunk(seeds: range) -> list[tuple[str, str, str]]:
    return [one(s) for s in seeds]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--replay", type=int, metavar="SEED", help="run one case and print it")
    ap.add_argument("--no-record", action="store_true", help="do not append the result to bench/FUZZ.md")
    args = ap.parse_args()

    if args.replay is not None:
        case = gen(args.replay)
        print(case.describe(limit=100_000))
        strategy, outcome, detail = one(args.replay)
        print(outcome, detail)
        return 1 if outcome == "fail" else 0

    first = args.seed if args.seed is not None else int(time.time())
    started = time.perf_counter()
    size = 200
    ranges = [range(s, min(s + size, first + args.cases)) for s in range(first, first + args.cases, size)]
    results: list[tuple[str, str, str]] = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            for part in pool.map(chunk, ranges):
                results.extend(part)
    else:
        for r in ranges:
            results.extend(chunk(r))
    elapsed = time.perf_counter() - started

    per = Counter(s for s, _, _ in results)
    failed = [(s, d) for s, o, d in results if o == "fail"]
    for strategy, detail in failed[:20]:
        print(f"FAIL [{strategy}] {detail}\n")
    for strategy in SHARES:
        n_fail = sum(1 for s, _ in failed if s == strategy)
        print(f"  {strategy:9} {per[strategy]:7} cases, {n_fail} failures")
    summary = f"{len(results)} cases, {len(failed)} failures"
    print(f"{summary} ({elapsed:.0f} s, seeds {first}..{first + args.cases - 1}, {args.workers} workers)")

    if not args.no_record:
        command = " ".join(["python bench/fuzz_long.py", *sys.argv[1:]])
        lines = [f"\n### {datetime.date.today().isoformat()}: {summary}", "",
                 f"- command: `{command}` (seeds {first}..{first + args.cases - 1})",
                 f"- time: {elapsed:.0f} s with {args.workers} workers on {platform.machine()}, "
                 f"Python {platform.python_version()}",
                 "- per strategy: " + ", ".join(
                     f"{s} {per[s]} ({sum(1 for x, _ in failed if x == s)} failed)" for s in SHARES)]
        lines += [f"- failure: [{s}] {d.splitlines()[0][:300]}" for s, d in failed[:10]]
        with RECORD.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
