"""Security: imports stay inside the policy root, nothing in a policy executes Python, outputs are
written atomically and `polc fmt` never damages a file it cannot parse (issue "Robustness and
security")."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy_lang import pipeline
from policy_lang.cli import main
from policy_lang.diagnostics import PolicyError
from policy_lang.pipeline import build

ROOT = Path(__file__).resolve().parent.parent
PERSONS = str(ROOT / "examples/persons.csv")
CLAIMS = str(ROOT / "examples/claims.csv")
SECRET = "SECRET-OUTSIDE-THE-ROOT"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `directory` with its bytes and modification time."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink()}


# ---- imports ---------------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A policy root (with polc.toml) and, beside it, a directory outside it holding a policy."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "polc.toml").write_text("", "utf-8")
    (outside / "evil.pol").write_text(f'policy evil "{SECRET}" {{ }}\n{SECRET} syntax error\n', "utf-8")
    return root, outside


def _main(root: Path, target: str) -> str:
    path = root / "main.pol"
    path.write_text(f'import "{target}"\npolicy main_p effective 2023-01-01 source "assumed: x" {{ }}\n', "utf-8")
    return str(path)


def _symlink(link: Path, to: Path) -> str:
    os.symlink(to, link)
    return link.name


def _file(path: Path, text: str) -> str:
    path.write_text(text, "utf-8")
    return path.name


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return path.name


IMPORTS: list[tuple[str, Callable[[Path, Path], str], str]] = [
    ("`..` out of the root", lambda r, o: "../outside/evil.pol", "leaves the policy root"),
    ("`..` through a subdirectory", lambda r, o: "sub/../../outside/evil.pol", "leaves the policy root"),
    ("an absolute path", lambda r, o: str(o / "evil.pol"), "is an absolute path"),
    ("/etc/passwd", lambda r, o: "/etc/passwd", "is an absolute path"),
    ("a Windows drive path", lambda r, o: "C:/evil.pol", "is an absolute path"),
    ("a symlink to a file outside", lambda r, o: _symlink(r / "link.pol", o / "evil.pol"), "leaves the policy root"),
    ("a symlinked directory", lambda r, o: _symlink(r / "linkdir", o) + "/evil.pol", "leaves the policy root"),
    ("/etc/passwd through a symlink", lambda r, o: _symlink(r / "passwd.pol", Path("/etc/passwd")),
     "leaves the policy root"),
    ("/dev/zero through a symlink", lambda r, o: _symlink(r / "zero.pol", Path("/dev/zero")),
     "leaves the policy root"),
    ("a directory", lambda r, o: "sub", "is a directory"),
    ("a file that is not a policy", lambda r, o: _file(r / "data.csv", SECRET), "is not a .pol file"),
    ("a .pol symlink to a text file", lambda r, o: _symlink(r / "notes.pol", r / _file(r / "notes.txt", SECRET)),
     "is not a .pol file"),
    ("a FIFO (it would block)", lambda r, o: _fifo(r / "fifo.pol"), "is not a regular file"),
    ("a symlink loop", lambda r, o: _symlink(r / "loop.pol", r / "loop.pol"), "cannot read it"),
    ("a NUL byte in the path", lambda r, o: "a\x00b.pol", "cannot read it"),
    ("a path too long", lambda r, o: "a" * 5000 + ".pol", "cannot read it"),
    ("a missing file", lambda r, o: "missing.pol", "no such file"),
]


@pytest.mark.parametrize(("label", "setup", "message"), IMPORTS, ids=[x[0] for x in IMPORTS])
def test_imports_cannot_leave_the_root(tree: tuple[Path, Path], label: str, setup: Callable[[Path, Path], str],
                                       message: str) -> None:
    root, outside = tree
    path = _main(root, setup(root, outside))
    for args in (["check", path], ["eval", path, "--persons", PERSONS, "--claims", CLAIMS], ["graph", path]):
        code, out = run(*args)
        assert code == 1, out
        assert "main.pol:1:1: error: import `" in out and message in out, out
        assert SECRET not in out  # nothing outside the root (or not a policy) was read or shown


def test_an_import_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.pol").write_text('import "sub/b.pol"\npolicy a amends b { }\n', "utf-8")
    (tmp_path / "sub/b.pol").write_text('import "c.pol"\npolicy b amends c { }\n', "utf-8")
    (tmp_path / "sub/c.pol").write_text('import "../a.pol"\npolicy c { }\n', "utf-8")
    code, out = run("check", str(tmp_path / "a.pol"))
    assert code == 1
    assert "c.pol:1:1: error: import cycle: a.pol -> b.pol -> c.pol -> a.pol" in out
    (tmp_path / "self.pol").write_text('import "self.pol"\npolicy s { }\n', "utf-8")
    code, out = run("check", str(tmp_path / "self.pol"))
    assert code == 1 and "self.pol:1:1: error: import cycle: self.pol -> self.pol" in out


def test_a_symlink_loop_named_to_the_library_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    os.symlink(tmp_path / "loop.pol", tmp_path / "loop.pol")
    with pytest.raises(PolicyError) as exc:
        build(tmp_path / "loop.pol")  # Path.resolve() raised RuntimeError: a traceback
    assert exc.value.diagnostics[0].message.startswith(f"cannot read {tmp_path / 'loop.pol'}")
    code, out = run("check", str(tmp_path / "loop.pol"))
    assert code == 1 and "loop.pol:1:1: error: " in out


def test_a_policy_named_on_the_command_line_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    fifo = tmp_path / "fifo.pol"
    os.mkfifo(fifo)  # reading it would block until a writer came
    for args in (["check", str(fifo)], ["eval", str(fifo), "--persons", PERSONS, "--claims", CLAIMS]):
        code, out = run(*args)
        assert code == 1 and "fifo.pol:1:1: error: " in out and "is not a regular file" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fmt_of_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pol"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-c", "from policy_lang.cli import main; main()", "fmt", str(fifo)],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr


# ---- nothing in a policy executes Python ---------------------------------------------------------------------
def payloads(marker: Path) -> list[str]:
    return [f"__import__('os').system('touch {marker}')",
            f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}') }}}}",
            f"${{__import__('os').system('touch {marker}')}}",
            "<script>alert(1)</script>",
            "%(x)s {0.__class__} %n {{7*7}}"]


def hostile_policy(marker: Path) -> tuple[str, str]:
    """A policy and the base it amends, with a payload in every string and Python's dunder names as names."""
    p = payloads(marker)

    def s(i: int) -> str:
        return f'"{p[i % len(p)]} #{i}"'

    main = f'''# {p[0]}
import "lib.pol"
policy evil {s(0)} amends evil_base document {s(1)} dated 2023-01-01 effective 2023-01-01 schemes resident source {s(2)} {{
  identity __import__ {s(3)} source {s(4)}
  region __builtins__ {s(5)} source {s(6)}
  diseases evil_list {s(7)} source {s(8)} {{ {s(9)}, {s(10)} = {s(11)} | {s(12)} }}
  hospitals evil_h {s(13)} designation county_poverty source {s(14)} {{ {s(15)}, {s(16)} }}
  fund evil_fund {s(17)} source {s(18)}
  param evil_text: text = {s(19)} source {s(20)}
  condition evil_cond {s(21)} = referred and kind = inpatient and region = __builtins__ source {s(22)}
  layer __class__ {s(23)} fund evil_fund source {s(24)} {{
    scope kind = inpatient source {s(25)}
    deductible 100 per year source {s(26)}
    rate 50% source {s(27)}
    rule __subclasses__ when evil_cond source {s(28)} {{ deductible 50 per year source {s(29)} }}
    exception __globals__ when diseases has evil_list source {s(30)} {{ rate 65% source {s(31)} }}
    by identity best source {s(32)} {{ __import__ source {s(33)} {{ rate 70% source {s(34)} }} }}
    cap 100000 per year source {s(35)}
  }}
  alert evil_alert {s(36)} source {s(37)} {{
    measure burden after __class__ where kind = inpatient source {s(38)}
    when identities has __import__ {{ threshold 100 source {s(39)} }}
  }}
  subsidy evil_sub {s(40)} best source {s(41)} {{
    amount 100 source {s(42)}
    __import__: 100% source {s(43)}
  }}
  target evil_target {s(44)} source {s(45)} {{ payout of __class__ where kind = inpatient at least 50% by 2025-12-31 }}
  test {s(46)} source {s(47)} {{
    person p1 {{ scheme = resident, identities = (__import__), region = __builtins__ }}
    claim c1 {{ person = p1, date = 2023-03-01, kind = inpatient, level = 3, total = 1000, eligible = 1000,
               diseases = ({s(10)}), referred = true }}
    expect c1 {{ __class__ = 617.50 }}
    expect person p1 2023 {{ alerts = (evil_alert), evil_sub = 100 }}
  }}
  test {s(48)} {{
    person p1 {{ scheme = resident }}
    claim c1 {{ person = p1, date = 2023-03-01, kind = inpatient, level = 3, total = 1000, eligible = 1000 }}
    expect c1 {{ __class__ = 450, out_of_pocket = 550 }}
  }}
}}
'''
    base = f'policy evil_base {s(51)} effective 2019-01-01 source {s(52)} {{\n  fund base_fund {s(53)}\n}}\n'
    return main, base


def test_nothing_in_a_policy_executes_python(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "root"
    root.mkdir()
    (root / "polc.toml").write_text("", "utf-8")
    main, base = hostile_policy(marker)
    path, lib = root / "main.pol", root / "lib.pol"
    path.write_text(main, "utf-8")
    lib.write_text(base, "utf-8")
    copy = root / "copy.pol"
    copy.write_text(main, "utf-8")
    data = ["--persons", PERSONS, "--claims", CLAIMS]
    runs = {
        "check": run("check", str(path)), "test": run("test", str(path)),
        "eval": run("eval", str(path), *data), "eval csv": run("eval", str(path), *data, "--format", "csv"),
        "eval table": run("eval", str(path), *data, "--format", "table"),
        "explain": run("explain", str(path), *data, "--person", "p1"),
        "graph": run("graph", str(path)), "graph dot": run("graph", str(path), "--format", "dot"),
        "diff": run("diff", str(lib), str(path)), "diff json": run("diff", str(lib), str(path), "--format", "json"),
        "diff html": run("diff", str(lib), str(path), "--format", "html"),
        "fmt": run("fmt", str(copy)),
    }
    assert not marker.exists(), "a policy string was executed"
    for name, (code, out) in runs.items():
        assert code == 0, f"{name}: {out[:2000]}"
    assert "2 passed, 0 failed" in runs["test"][1]
    assert "__import__('os').system" in runs["explain"][1]  # shown as text, verbatim
    html = runs["diff html"][1]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    formatted = copy.read_text("utf-8")
    for payload in payloads(marker):
        assert payload in formatted  # fmt keeps every string as written
    assert [p.name for p in sorted(root.iterdir())] == ["copy.pol", "lib.pol", "main.pol", "polc.toml"]


# ---- atomic outputs -----------------------------------------------------------------------------------------
UNSPECIFIED = '''policy p "t" effective 2023-01-01 source "assumed: x" {
  fund f
  param bed_day_rate: money unspecified
  layer basic "b" fund f {
    scope kind = inpatient
    unit_rate bed_day_rate per bed_days
  }
}
'''


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    (tmp_path / "p.pol").write_text(UNSPECIFIED, "utf-8")
    (tmp_path / "bad.pol").write_text("policy p { layer x fund nowhere { rate 50% } }\n", "utf-8")
    (tmp_path / "bad.csv").write_text("claim_id,person_id\nc1,nobody\n", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path


FAILING_OUTPUTS = {
    "eval: an unspecified parameter": (["eval", "p.pol", "--persons", PERSONS, "--claims", CLAIMS], 2, "bed_day_rate"),
    "eval: a policy error": (["eval", "bad.pol", "--persons", PERSONS, "--claims", CLAIMS], 1, "nowhere"),
    "eval: a data error": (["eval", "p.pol", "--persons", PERSONS, "--claims", "bad.csv"], 2, "bad.csv"),
    "graph: a policy error": (["graph", "bad.pol"], 1, "nowhere"),
    "diff: a policy error": (["diff", "p.pol", "bad.pol"], 1, "nowhere"),
}


@pytest.mark.parametrize("label", list(FAILING_OUTPUTS))
@pytest.mark.parametrize("existing", [False, True], ids=["new target", "existing target"])
def test_a_failed_run_writes_no_output(out_dir: Path, label: str, existing: bool) -> None:
    args, expected_code, mentioned = FAILING_OUTPUTS[label]
    target = out_dir / "out" / "result.json"
    if existing:
        target.write_text("the previous result\n", "utf-8")
    before = snapshot(out_dir / "out")
    resolved = [str(out_dir / a) if a.endswith((".pol", ".csv")) and not a.startswith("/") else a for a in args]
    code, out = run(*resolved, "--out", str(target))
    assert code == expected_code and mentioned in out, out
    assert "error:" in out
    assert snapshot(out_dir / "out") == before  # not created, or untouched; and no temporary file left


def test_a_successful_run_leaves_only_the_target(out_dir: Path) -> None:
    target = out_dir / "out" / "result.json"
    target.write_text("the previous result\n", "utf-8")
    code, out = run("eval", str(out_dir / "p.pol"), "--persons", PERSONS, "--claims", CLAIMS,
                     "--set", "bed_day_rate=120", "--out", str(target))
    assert code == 0 and out == ""
    assert target.read_text("utf-8").startswith("{")
    assert [p.name for p in (out_dir / "out").iterdir()] == ["result.json"]


def test_an_interrupted_write_leaves_the_target_and_no_temporary_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.json"
    target.write_text("the previous result\n", "utf-8")
    before = snapshot(tmp_path)

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        pipeline.write_atomic(target, "the new result\n")
    assert snapshot(tmp_path) == before


# ---- fmt never damages a file it cannot parse ----------------------------------------------------------------
BROKEN = [
    ("a syntax error", 'policy p "t" {\n  layer basic fund f {\n    rate 50%% }\n}\n',
     "broken.pol:3:13: error: unexpected character '%'"),
    ("an unterminated string", 'policy p "t {\n}\n', "broken.pol:1:10: error: unexpected character '\"'"),
    ("a truncated file", 'policy p "t" {\n  layer basic fund f {\n    rate ', "broken.pol:3:5: error: unexpected end of file"),
    ("nesting too deep", "policy p { layer l fund f { rate " + "max(" * 500 + "1%" + ", 2%)" * 500 + " } }\n",
     "broken.pol:1:"),
]


@pytest.mark.parametrize(("label", "text", "diagnostic"), BROKEN, ids=[b[0] for b in BROKEN])
def test_fmt_leaves_a_file_with_a_syntax_error_untouched(tmp_path: Path, label: str, text: str,
                                                         diagnostic: str) -> None:
    path = tmp_path / "broken.pol"
    path.write_text(text, "utf-8")
    before = snapshot(tmp_path)
    for args in (["fmt", str(path)], ["fmt", "--check", str(path)]):
        code, out = run(*args)
        assert code == 1, out
        assert diagnostic in out, out
    assert snapshot(tmp_path) == before  # untouched, and no temporary file beside it
