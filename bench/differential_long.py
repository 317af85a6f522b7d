"""Long differential run (`--examples 20000 --workers 2`): random policies through interp and vector."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.gen_policies import RandomChooser, build_case, disagreement, gen_case


def check(seed: int) -> tuple[str, int, str]:
    """(outcome, seed, detail): agree | error (both raised the same EvalError) | rejected | crash | differ."""
    case = gen_case(RandomChooser(random.Random(seed)))
    try:
        built = build_case(case)
    except Exception as exc:  # the front end itself failed: reported, not an engine disagreement
        return "crash", seed, f"{type(exc).__name__}: {exc}\n{case.source()}"
    if built is None:
        return "rejected", seed, ""
    problem = disagreement(built, case)
    if problem is not None:
        return "differ", seed, f"{problem}\n{case.source()}\n{case.options}"
    from policy_lang import interp
    from tests.gen_policies import outcome

    return ("error" if isinstance(outcome(interp.run, built, case), str) else "agree"), seed, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=2000, help="random cases to run")
    parser.add_argument("--seed", type=int, default=0, help="first seed; case i uses seed + i")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    args = parser.parse_args()
    seeds = range(args.seed, args.seed + args.examples)
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for kind, seed, detail in pool.map(check, seeds, chunksize=50):
            counts[kind] += 1
            if kind in ("differ", "crash") and counts[kind] <= 3:
                print(f"--- seed {seed} {'disagrees' if kind == 'differ' else 'crashes the front end'}:\n{detail}",
                      file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"differential: {args.examples} cases (seeds {args.seed}..{args.seed + args.examples - 1}): "
          f"{counts['agree']} agree, {counts['error']} raise the same error, {counts['rejected']} refused by the "
          f"checker, {counts['crash']} crash the front end, {counts['differ']} disagree; {elapsed:.1f} s")
    return 1 if counts["differ"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
