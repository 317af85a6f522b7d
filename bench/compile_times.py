"""Front-end times of every seed policy: grammar tables (once per process), parse+check, compile.

    python bench/compile_times.py [--repeats 7] [POLICY ...]      (prints one JSON document)

`pipeline.build(path)` = load_program (parse of the file and its imports) + check + compile_policy.
Each phase is timed apart, median of R runs with a fresh SourceCache each time; the first parse in a
process also builds the LALR tables of the grammar (lark), reported once as `grammar_s`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("policies", nargs="*")
    a = ap.parse_args()
    t = time.perf_counter()
    from policy_lang import parse
    from policy_lang.check import check
    from policy_lang.compile import compile_policy
    from policy_lang.diagnostics import SourceCache
    from policy_lang.load import load_program

    import_s = time.perf_counter() - t
    t = time.perf_counter()
    parse._parser()
    grammar_s = time.perf_counter() - t
    paths = [Path(p) for p in a.policies] or sorted((ROOT / "policies").rglob("*.pol"))
    rows = []
    for path in paths:
        load_t, check_t, compile_t = [], [], []
        graph = None
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            program = load_program(path, SourceCache())
            t1 = time.perf_counter()
            checked = check(program)
            t2 = time.perf_counter()
            graph = compile_policy(checked)
            t3 = time.perf_counter()
            load_t.append(t1 - t0)
            check_t.append(t2 - t1)
            compile_t.append(t3 - t2)
        assert graph is not None
        chain_bytes = sum(len(s.encode("utf-8")) for s in _texts(program))
        rows.append({"policy": str(path.relative_to(ROOT)) if path.is_absolute() else str(path),
                     "bytes": path.stat().st_size, "chain_bytes": chain_bytes, "files": len(program.files),
                     "layers": len(graph.layers), "epochs": len(graph.epochs),
                     "parse_s": statistics.median(load_t), "check_s": statistics.median(check_t),
                     "compile_s": statistics.median(compile_t),
                     "build_s": statistics.median(a + b + c for a, b, c in zip(load_t, check_t, compile_t, strict=True))})
    print(json.dumps({"import_s": import_s, "grammar_s": grammar_s, "repeats": a.repeats, "policies": rows}))


def _texts(program):  # type: ignore[no-untyped-def]
    for f in program.files:
        path = Path(f.path) if hasattr(f, "path") else None
        if path is not None and path.is_file():
            yield path.read_text("utf-8")


if __name__ == "__main__":
    main()
