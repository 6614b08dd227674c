"""`bench hitrate | calibrate | fit-verifier` on pairs this project wrote (tests/data).

tests/data/bench_pairs.jsonl has 32 pairs in five groups, counted by hand below:
  A  8 English duplicates, lightly rephrased (cosine >= 0.96 with the bundled model);
  B  4 English duplicates repeated verbatim (exact hits);
  C  8 English non-duplicates on unrelated topics (cosine < 0.3);
  D  6 English non-duplicates differing in one detail each: a percentage, a country, a
     negation, a year, PDF/Word swapped, increase/decrease; three of them have cosine >= 0.95
     (negation 0.995, PDF/Word 0.988, year 0.953) and sales 0.922; every guard set refuses all;
  E  6 Korean pairs: 4 paraphrases (the bundled model ranks another entry first for each),
     1 verbatim repeat, 1 non-duplicate (tomorrow in Busan vs today in Seoul, cosine 0.94).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.calibrate import calibrate
from benchmarks.datasets import load_pairs
from benchmarks.fit_verifier import auc, fit_logistic
from benchmarks.hitrate import (
    MODEL,
    ProbeSet,
    collect_probes,
    configured_policy,
    consistency,
    evaluate,
    plain_cosine_policy,
    wilson_upper,
)
from service.api.app import create_app
from service.errors import InvalidRequest
from service.guards import GUARDS
from service.policy import Bypass, Hit, Miss
from tests.conftest import make_settings
from tests.servers import running

PAIRS = Path(__file__).parent / "data" / "bench_pairs.jsonl"
ALL_GUARDS = list(GUARDS)


@pytest.fixture(scope="module")
def probes(model: object, tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    settings = make_settings(
        tmp_path_factory.mktemp("bench"),
        cache={"min_similarity": 0.95},
        policy={"guards": ALL_GUARDS, "verifier": "off"},
    )
    return collect_probes(settings, model, load_pairs(PAIRS))  # type: ignore[arg-type]


def test_entry_ids_count_up_in_storing_order(probes: ProbeSet) -> None:
    # Ties between equally similar prompts go to the lower id: with random ids a tie fell
    # either way from run to run.
    cached = probes.dataset.distinct_cached
    own = {probes.dataset.pairs[p.pair_index].a: p.own_entry for p in probes.probes}
    assert own == {a: list(cached).index(a) + 1 for a in own}


def test_dataset_loads_with_its_hash() -> None:
    dataset = load_pairs(PAIRS)
    assert len(dataset.pairs) == 32 and dataset.duplicates == 17
    assert dataset.sha256 == hashlib.sha256(PAIRS.read_bytes()).hexdigest()
    assert dataset.name == "bench_pairs"
    assert len(load_pairs(PAIRS, limit=5).pairs) == 5


def test_bad_dataset_lines_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y", "duplicate": true}\n{"a": "x"}\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="bad.jsonl:2"):
        load_pairs(bad)
    with pytest.raises(InvalidRequest, match="cannot read"):
        load_pairs(tmp_path / "missing.jsonl")


def test_shipped_policy_counts(probes: ProbeSet) -> None:
    shipped = configured_policy(make_settings(Path("unused")), probes.base)
    for threshold in (0.90, 0.95):
        tally = evaluate(probes, shipped, threshold)
        assert (tally.duplicates, tally.non_duplicates) == (17, 15)
        # A (8) + B (4) + the Korean verbatim repeat; D refused by guards, Korean bypassed.
        assert tally.right_hits == 13
        assert tally.wrong_entry_hits == 0
        assert tally.false_hits == 0
        assert tally.exact_hits == 5
        assert tally.bypasses == 5
        assert tally.hit_rate == pytest.approx(13 / 17)
        assert tally.precision == 1.0


def test_plain_cosine_counts(probes: ProbeSet) -> None:
    plain = plain_cosine_policy()
    strict = evaluate(probes, plain, 0.95)
    assert (strict.right_hits, strict.wrong_entry_hits, strict.bypasses) == (13, 0, 0)
    assert strict.false_hits == 3  # negation, PDF/Word, the year
    loose = evaluate(probes, plain, 0.90)
    assert loose.false_hits == 5  # + increase/decrease and the Korean weather pair
    assert loose.false_hit_rate == pytest.approx(5 / 15)


def test_sweep_equals_the_real_lookups(probes: ProbeSet) -> None:
    shipped = configured_policy(make_settings(Path("unused")), probes.base)
    assert consistency(probes, shipped) == {"checked": 32, "mismatches": 0}
    assert all(p.latency_ms > 0 for p in probes.probes)


def test_bench_decision_equals_http_lookup(probes: ProbeSet, model: object, tmp_path: Path) -> None:
    """The same pair, decided by the benchmark and by POST /v1/cache/lookup."""
    settings = make_settings(
        tmp_path / "http",
        cache={"min_similarity": 0.95},
        policy={"guards": ALL_GUARDS, "verifier": "off"},
    )
    pairs = probes.dataset.pairs
    with running(create_app(settings, embedder=model)) as url, httpx.Client(base_url=url) as c:  # type: ignore[arg-type]
        for text in probes.dataset.distinct_cached:
            reply = c.post(
                "/v1/cache/entries", json={"prompt": text, "model": MODEL, "response": "x"}
            )
            assert reply.status_code == 201
        statuses = {"hit-exact": 0, "hit-semantic": 0, "miss": 0}
        for probe in probes.probes:
            pair = pairs[probe.pair_index]
            body = c.post("/v1/cache/lookup", json={"prompt": pair.b, "model": MODEL}).json()
            statuses[body["status"]] += 1
            decision = probe.real
            if isinstance(decision, Hit):
                assert body["status"] == f"hit-{decision.kind}", pair
                assert body["entry"]["prompt"] == pair.a
                assert body["similarity"] == pytest.approx(decision.similarity, abs=1e-5)
            else:
                assert body["status"] == "miss", pair
                assert body["entry"] is None
                if isinstance(decision, Bypass):
                    assert body["reason"] == decision.reason
                else:
                    assert isinstance(decision, Miss)
    assert statuses == {"hit-exact": 5, "hit-semantic": 8, "miss": 19}


def test_cli_writes_json_markdown_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import bench

    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(
        [
            "bench", "hitrate", "--dataset", str(PAIRS), "--out", str(out),
            "--min-similarity", "0.9,0.95", "--baseline", "--data-dir", str(tmp_path / "d"),
        ]
    )  # fmt: skip
    assert args.func(args) == 0
    result = json.loads((out / "hitrate-bench_pairs.json").read_text(encoding="utf-8"))
    assert result["dataset"]["sha256"] == hashlib.sha256(PAIRS.read_bytes()).hexdigest()
    assert result["environment"]["command"].startswith("promptcache ")
    assert result["consistency"]["mismatches"] == 0
    names = [p["name"] for p in result["policies"]]
    assert names == ["shipped", "plain-cosine"]
    plain = {row["min_similarity"]: row for row in result["policies"][1]["rows"]}
    assert plain[0.95]["false_hits"] == 3
    assert (out / "hitrate-bench_pairs.png").read_bytes()[:4] == b"\x89PNG"
    assert "| plain-cosine | 0.950 |" in (out / "hitrate-bench_pairs.md").read_text("utf-8")
    assert "p50" in capsys.readouterr().out


def test_calibrate_picks_the_most_permissive_qualifying_setting(probes: ProbeSet) -> None:
    grid = [0.85, 0.90, 0.92, 0.95, 0.96, 0.99]
    shipped = configured_policy(make_settings(Path("unused")), probes.base)
    choice, evaluated = calibrate(probes, shipped, 0.25, thresholds=grid)
    assert choice is not None and len(evaluated) == len(grid)
    # No false hit anywhere (upper bound 0.204 on 15 non-duplicates) and 13/17 at every
    # setting (the two group-A pairs below 0.99 differ only in a final mark, which counts as
    # 1.0): of equally good settings the strictest is chosen.
    assert choice.min_similarity == 0.99
    assert choice.tally.hit_rate == pytest.approx(13 / 17)
    assert choice.config_lines()[:2] == ["[cache]", "min_similarity = 0.99"]
    # Plain cosine serves the negated question at 0.995: no setting of the grid qualifies.
    none, _ = calibrate(probes, plain_cosine_policy(), 0.25, thresholds=grid)
    assert none is None


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 100) == pytest.approx(0.0370, abs=1e-4)
    assert wilson_upper(2, 100) == pytest.approx(0.0700, abs=1e-4)
    assert wilson_upper(50, 100) == pytest.approx(0.5961, abs=1e-4)
    assert wilson_upper(0, 0) == 1.0


def test_logistic_fit_recovers_known_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 2))
    p = 1 / (1 + np.exp(-(0.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1])))
    y = (rng.random(4000) < p).astype(np.int8)
    weights, bias, _, _ = fit_logistic(x, y, l2=0.0)
    assert weights == pytest.approx([2.0, -1.0], abs=0.2)
    assert bias == pytest.approx(0.5, abs=0.15)
    assert auc(x[:, 0], y) > 0.75
    assert auc(np.zeros(4000), y) == pytest.approx(0.5)


def test_an_identical_prompt_on_a_non_duplicate_is_a_false_hit_counted_apart() -> None:
    """PAWS-X style: `b` is word for word another pair's `a`. BASELINE.md counts any hit on a
    non-duplicate as false; the identical ones are shown apart as the floor no cache avoids."""
    from benchmarks.hitrate import Probe, Tally
    from service.policy import Query

    def probe(duplicate: bool) -> Probe:
        miss = Miss("unused")
        return Probe(0, 1, duplicate, Query("f", "n", "q"), None, (), miss, 0.0)

    tally = Tally(0.95)
    tally.add(probe(False), Hit(7, "exact", 1.0, "identical request"), 1.0)
    tally.add(probe(False), Hit(7, "semantic", 0.99, "similarity"), 1.0)
    tally.add(probe(True), Hit(1, "semantic", 0.99, "similarity"), 1.0)
    assert (tally.identical_hits, tally.false_hits, tally.right_hits) == (1, 2, 1)
    assert tally.hits == 3 and tally.exact_hits == 1
    assert tally.false_other_entry_hits == 1
    assert tally.false_hit_rate == pytest.approx(2 / 2)
    assert tally.precision == pytest.approx(1 / 3)


def test_false_hits_on_another_pairs_prompt_are_counted_apart() -> None:
    from benchmarks.hitrate import Probe, Tally
    from service.policy import Query

    probe = Probe(0, 1, False, Query("f", "n", "q"), None, (), Miss("unused"), 0.0)
    tally = Tally(0.95)
    tally.add(probe, Hit(1, "semantic", 0.99, "own a"), 1.0)
    tally.add(probe, Hit(9, "semantic", 0.99, "another pair's a"), 1.0)
    assert (tally.false_hits, tally.false_other_entry_hits) == (2, 1)
