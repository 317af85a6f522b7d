"""The HTML report: sections and figures, self-contained, escaped, deterministic, and drawn by Chromium."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policy_lang.pipeline import build
from simulator import job as jobs
from simulator.report import render_report
from simulator.run import Synthetic
from simulator.summary import oop_histogram

ROOT = Path(__file__).resolve().parent.parent
YINGKOU = str(ROOT / "policies/yingkou/major-illness-2023.pol")
SHENYANG = str(ROOT / "policies/shenyang/poverty-2019.pol")
SECTIONS = ("1 Policies", "2 Population and run", "3 Headline figures", "4 Fund impact", "5 Out of pocket",
            "6 Winners and losers", "7 Payout ratios vs targets", "8 Groups by identity and scheme",
            "9 Premium subsidies", "10 Replicate intervals", "11 Assumptions", "12 How to reproduce")
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
POLICY_BLUE = (0x1F, 0x5F, 0xA8)  # simulator.report.POLICY_COLOR


def _doc(baseline: str | None, persons: int, replicates: int = 1) -> dict[str, Any]:
    """Yingkou (and a baseline) on a small synthetic population, prepared the way `polc simulate` does."""
    request = jobs.Request(YINGKOU, baseline, None, persons, None, 1, None, "vector", 1, None, replicates, (), ())
    job = jobs.prepare(request, build)
    assert job.settings == (("bed_day_rate", 8000),)  # the profile's assumed 80 yuan a bed-day
    return jobs.run_job(job)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return _doc(SHENYANG, 3000)


@pytest.fixture(scope="module")
def html(doc: dict[str, Any]) -> str:
    return render_report(doc)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)


# ---- content ---------------------------------------------------------------------------------------------
def test_every_section_and_figure_is_there(html: str) -> None:
    for heading in SECTIONS:
        assert f">{heading} " in html, heading
    for n in range(1, 5):
        assert f"Figure {n} · 图{n}" in html
    assert len(_svgs(html)) == 4
    assert "营口市重特大疾病医疗保险和医疗救助管理办法" in html and "营政办发〔2022〕23号" in html
    assert "沈阳市医疗保障扶贫实施方案" in html and "沈医保发〔2019〕78号" in html
    assert "2022-09-23" in html and "2023-01-01 – open-ended" in html
    assert "liaoning-resident" in html and "bed_day_rate" in html
    assert "--synthetic 3000 --profile liaoning-resident --seed 1 --year 2023" in html
    assert "居民医保政策范围内住院费用报销比例" in html and "70.00%" in html


def test_amounts_are_yuan_with_thousands_separators(doc: dict[str, Any], html: str) -> None:
    paid = doc["policy"]["paid_total"]
    whole, cents = paid.split(".")
    assert f"{int(whole):,}.{cents}" in html
    assert int(whole) >= 1000 and paid not in html


def test_histogram_table_matches_the_document(doc: dict[str, Any], html: str) -> None:
    bins = doc["policy"]["out_of_pocket"]["histogram"]
    assert sum(b["claimants"] for b in bins) == doc["policy"]["out_of_pocket"]["claimants"]
    assert "100,000 and more" in html and "<td>0 – 100</td>" in html


def test_without_a_baseline_figure_3_says_why() -> None:
    html = render_report(_doc(None, 500))
    assert "No baseline: winners and losers need a policy to compare with." in html
    assert "Figure 3 · 图3" in html and len(_svgs(html)) == 3
    for heading in SECTIONS:
        assert f">{heading} " in html, heading


def test_replicates_give_an_interval_table() -> None:
    doc = _doc(SHENYANG, 500, replicates=2)
    html = render_report(doc)
    assert "95% low" in html and "policy.paid_total" in html and "changes.funds.assistance_fund" in html
    assert "1, 2" in html  # the replicate seeds


# ---- self-contained, well-formed, deterministic ----------------------------------------------------------
def test_report_is_self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert all(src.startswith("data:") for src in re.findall(r'\bsrc\s*=\s*["\']?([^"\'\s>]*)', html))
    assert re.search(r"url\((?!#)", html) is None  # only references inside the page's own SVG


def test_every_svg_is_well_formed_with_unique_ids(html: str) -> None:
    for svg in _svgs(html):
        root = ET.fromstring(svg)
        assert root.tag == "svg" and root.get("viewBox")
        assert root.find(".//text") is not None  # svg.fonttype none: text stays text
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', html))
    assert refs <= set(ids)


def test_rendering_is_deterministic(doc: dict[str, Any], html: str) -> None:
    assert render_report(copy.deepcopy(doc)) == html
    assert "<dc:date>" not in html and "DejaVuSans-" not in html


def test_cjk_in_a_chart_label_does_not_warn(doc: dict[str, Any]) -> None:
    """pytest turns warnings into errors: matplotlib's missing-glyph warning must not escape."""
    odd = copy.deepcopy(doc)
    odd["policy"]["payments"] = {("基本医保" if k == "basic" else k): v for k, v in odd["policy"]["payments"].items()}
    assert any("基本医保" in svg for svg in _svgs(render_report(odd)))


# ---- escaping --------------------------------------------------------------------------------------------
EVIL = """policy {name} "<script>alert(1)</script>" document "<img src=x onerror=alert(2)>"
    effective 2023-01-01 schemes resident source "assumed: test" {{
  layer basic "基本<b>医保</b>" fund basic_fund {{
    scope kind = inpatient
    deductible 0 per year
    rate {rate}
  }}
}}
"""


def test_values_from_the_policies_are_escaped(tmp_path: Path) -> None:
    paths = []
    for name, rate in (("evil_new", "50%"), ("evil_old", "40%")):
        path = tmp_path / f"{name}.pol"
        path.write_text(EVIL.format(name=name, rate=rate), "utf-8")
        paths.append(str(path))
    new, old = build(paths[0]), build(paths[1])
    job = jobs.Job(new, paths[0], old, paths[1], Synthetic("liaoning-resident", 300, 1), 2023)
    html = render_report(jobs.run_job(job))
    assert "<script" not in html and "<img" not in html and "<b>医保" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "基本&lt;b&gt;医保&lt;/b&gt;" in html


# ---- the histogram the report draws ------------------------------------------------------------------------
def test_oop_histogram_bins_are_exact_and_half_open() -> None:
    fen = np.sort(np.array([0, 9_999, 10_000, 10_001, 5_000_000, 9_999_999, 10_000_000, 50_000_000], np.int64))
    bins = oop_histogram(fen)
    assert [(b["low"], b["high"]) for b in bins][:3] == [("0.00", "100.00"), ("100.00", "200.00"),
                                                         ("200.00", "500.00")]
    assert bins[-1] == {"low": "100000.00", "high": None, "claimants": 2}
    counts = {b["low"]: b["claimants"] for b in bins}
    assert counts["0.00"] == 2 and counts["100.00"] == 2 and counts["50000.00"] == 2
    assert sum(counts.values()) == len(fen)
    assert sum(b["claimants"] for b in oop_histogram(np.zeros(0, np.int64))) == 0


# ---- Chromium --------------------------------------------------------------------------------------------
def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=60, check=False)


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (Debian package `chromium`; "
                                                             ".ci/run installs it)")


@needs_chromium
def test_chromium_parses_the_page_with_its_charts(tmp_path: Path, html: str) -> None:
    page = tmp_path / "report.html"
    page.write_text(html, "utf-8")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count("<svg") == 4
    assert dom.count("viewBox=") == 4  # parsed as SVG elements (an HTML element would lower-case it)
    for heading in SECTIONS:
        assert f">{heading} " in dom, heading
    assert "Figure 4 · 图4" in dom


@needs_chromium
def test_chromium_screenshot_shows_the_charts(tmp_path: Path, html: str) -> None:
    from PIL import Image  # Pillow comes with matplotlib

    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(html, "utf-8")
    result = _chromium(tmp_path, "--window-size=1280,5000", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 5000)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    by_color = {color: n for n, color in colors}
    white = by_color.get((255, 255, 255), 0)
    assert white < 0.97 * 1280 * 5000  # not blank
    assert by_color.get(POLICY_BLUE, 0) > 2000  # the policy's bars of figures 1 and 2 were drawn
