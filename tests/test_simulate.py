"""polc simulate: conservation on every claim, determinism, and every engine and worker count agreeing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from policy_lang import interp, vector
from policy_lang.cli import main
from policy_lang.pipeline import build
from simulator.population import generate
from simulator.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
YINGKOU = str(ROOT / "policies/yingkou/major-illness-2023.pol")
SHENYANG = str(ROOT / "policies/shenyang/poverty-2019.pol")
BED_DAY = interp.Options(settings={"bed_day_rate": 8000})


def simulate(*extra: str) -> str:
    args = ["simulate", YINGKOU, "--baseline", SHENYANG, "--synthetic", "3000", "--seed", "7", "--format", "json",
            "--quiet", *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("profile,policy", [("liaoning-resident", YINGKOU),
                                            ("liaoning-provincial-direct",
                                             str(ROOT / "policies/liaoning/provincial-direct-2019.pol")),
                                            ("jining", str(ROOT / "policies/jining/benefits-2021.pol"))])
def test_conservation_on_every_claim_of_a_simulated_population(profile: str, policy: str) -> None:
    cols = generate(load_profile(profile), 20_000, seed=3, year=2023)
    result = vector.run_columns(build(policy).graph, cols, BED_DAY)
    total = cols.claims.total_cost
    assert np.array_equal(result.payments.sum(axis=1) + result.out_of_pocket, total)
    assert (result.payments >= 0).all() and (result.out_of_pocket >= 0).all()
    # no layer pays more than the claim's eligible cost plus any material above the limit
    assert (result.payments.sum(axis=1) <= cols.claims.eligible_cost + cols.claims.material_over_limit).all()


def test_the_same_seed_gives_identical_output() -> None:
    assert simulate() == simulate()
    assert simulate() != simulate("--seed", "8")


def test_engines_and_workers_give_byte_identical_json() -> None:
    reference = simulate("--engine", "interp")
    assert simulate("--engine", "vector") == reference
    assert simulate("--workers", "2") == reference


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="the dask extra is not installed")
def test_dask_local_cluster_gives_the_same_json() -> None:
    assert simulate("--engine", "dask", "--workers", "2") == simulate()


def test_document_figures_add_up() -> None:
    doc = json.loads(simulate())
    pol = doc["policy"]
    paid = sum(int(v.replace(".", "")) for v in pol["payments"].values())
    assert paid == int(pol["paid_total"].replace(".", ""))
    assert paid + int(pol["out_of_pocket_total"].replace(".", "")) == int(pol["total_cost"].replace(".", ""))
    assert sum(int(v.replace(".", "")) for v in pol["funds"].values()) == paid
    movers = doc["winners_losers"]["total"]
    assert sum(g["winners"] for g in doc["winners_losers"]["by_group"].values()) == movers["winners"]
    assert doc["assumptions"][0]["parameter"] == "bed_day_rate"
    assert doc["population"] == {"source": "synthetic", "profile": "liaoning-resident", "size": 3000, "seed": 7,
                                 "year": 2023, "persons": 3000, "claims": doc["population"]["claims"],
                                 "claimants": doc["population"]["claimants"]}


def test_replicates_give_intervals() -> None:
    doc = json.loads(simulate("--replicates", "3"))
    interval = doc["replicates"]["intervals_95"]["policy.paid_total"]
    assert interval["replicates"] == 3
    assert float(interval["low"]) <= float(interval["mean"]) <= float(interval["high"])


def test_bad_requests_exit_2() -> None:
    runner = CliRunner()
    for args in (["simulate", YINGKOU], ["simulate", YINGKOU, "--synthetic", "10", "--profile", "nowhere"],
                 ["simulate", YINGKOU, "--synthetic", "0"],
                 ["simulate", YINGKOU, "--synthetic", "10", "--set", "nope=1"]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 2, args
        assert "polc: error:" in result.stderr and "Traceback" not in result.stderr
