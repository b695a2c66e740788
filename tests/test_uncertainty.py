"""Intervals (subsampling for FID/KID, bootstrap for per-sample metrics) and FID∞/IS∞ (issue 13, items 1, 2)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from facemetrics.metrics.fid import CovFactor, frechet_distance
from facemetrics.metrics.fid import fid_interval, gaussian_of_rows
from facemetrics.metrics.kid import kid_interval
from facemetrics.metrics.uncertainty import CISettings, bootstrap_interval, fold_mean, subsample_interval
from facemetrics.stats import FeatureStats


def _gaussians(d: int, seed: int):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a @ a.T / d + 0.5 * np.eye(d), b @ b.T / d + 0.5 * np.eye(d)
    return np.zeros(d), s1, np.full(d, 0.3), s2


def _fid_rows(x, y) -> float:
    return frechet_distance(*gaussian_of_rows(x), *gaussian_of_rows(y))


def test_factor_paths_equal_covariance_path():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 8)), rng.standard_normal((7, 8)) + 0.5
    sx, sy = FeatureStats.from_features(x), FeatureStats.from_features(y)
    ref = frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov)
    mx, fx = CovFactor.of_rows(x)
    my, fy = CovFactor.of_rows(y)
    assert np.allclose(fx.f.T @ fx.f, np.cov(x, rowvar=False))
    # rank-deficient covariances: the eigh path's clamped round-off eigenvalues (~1e-16) add √ ≈ 1e-8 each
    assert frechet_distance(mx, fx, my, fy) == pytest.approx(ref, rel=1e-7)
    assert frechet_distance(mx, fx, sy.mean, sy.cov) == pytest.approx(ref, rel=1e-7)
    assert frechet_distance(sx.mean, sx.cov, my, fy) == pytest.approx(ref, rel=1e-7)
    assert _fid_rows(x, y) == pytest.approx(ref, rel=1e-7)
    big = np.random.default_rng(1).standard_normal((30, 4))  # full rank: both paths agree to round-off
    mb, fb = CovFactor.of_rows(big)
    sb = FeatureStats.from_features(big)
    assert frechet_distance(mb, fb, sb.mean + 1, sb.cov * 2) == pytest.approx(
        frechet_distance(sb.mean, sb.cov, sb.mean + 1, sb.cov * 2), rel=1e-10)


def _coverage(n: int, reps: int, level: float, rescale: str) -> float:
    mu1, s1, mu2, s2 = _gaussians(4, 123)
    truth = frechet_distance(mu1, s1, mu2, s2)
    hit = 0
    for r in range(reps):
        rng = np.random.default_rng(5000 + r)
        x, y = rng.multivariate_normal(mu1, s1, n), rng.multivariate_normal(mu2, s2, n)
        ci = subsample_interval(_fid_rows(x, y), lambda i: _fid_rows(x[i["real"]], y[i["fake"]]),
                                {"real": n, "fake": n}, level=level, draws=50, seed=r, rescale=rescale, floor=0.0)
        hit += ci["lo"] <= truth <= ci["hi"]
    return hit / reps


def test_fid_interval_covers_closed_form_truth_at_nominal_rate():
    """Two 4-d Gaussians with known FID, n = 1000 per side, 200 data sets: the 90 % interval covers the
    truth about 90 % of the time (binomial sd 2 %); the textbook √(m/n) rescaling undercovers."""
    cov = _coverage(1000, 200, 0.9, "fpc")
    assert 0.84 <= cov <= 0.96, cov
    short = _coverage(1000, 200, 0.9, "politis-romano")
    assert short < cov - 0.05, (short, cov)


def test_fid_interval_deterministic_and_recorded():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((60, 6)), rng.standard_normal((50, 6)) + 0.2
    theta = _fid_rows(real, fake)
    a = fid_interval(fake, theta, CISettings(0.95, 20, 7), real=real)
    b = fid_interval(fake, theta, CISettings(0.95, 20, 7), real=real)
    c = fid_interval(fake, theta, CISettings(0.95, 20, 8), real=real)
    assert a == b and a != c
    assert a["lo"] <= a["hi"] and a["lo"] >= 0
    assert a["subsample"] == {"real": 30, "fake": 25} and a["draws"] == 20 and a["seed"] == 7
    assert a["level"] == 0.95 and a["sides"] == ["real", "fake"] and a["scale"] == pytest.approx(1.0, abs=1e-12)


def test_fid_interval_with_real_statistics_only_draws_fake():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((80, 5)), rng.standard_normal((40, 5)) + 0.3
    st = FeatureStats.from_features(real)
    ci = fid_interval(fake, frechet_distance(st.mean, st.cov, *gaussian_of_rows(fake)), CISettings(0.9, 10, 0),
                      real_stats=st)
    assert ci["sides"] == ["fake"] and "only FAKE" in ci["note"]


def test_too_few_items_no_interval_but_a_warning():
    rng = np.random.default_rng(3)
    with pytest.warns(UserWarning, match="FID: no interval"):
        assert fid_interval(rng.standard_normal((3, 4)), 1.0, CISettings(), real=rng.standard_normal((9, 4))) is None


def test_kid_interval_kernel_path_equals_direct_path(monkeypatch):
    from facemetrics.metrics import uncertainty
    from facemetrics.metrics.kid import kid

    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((40, 8)), rng.standard_normal((36, 8)) + 0.1
    for size in (10, 1000):  # subsets smaller than a draw; every subset the whole draw
        theta = kid(real, fake, subsets=5, subset_size=size, seed=0).value
        fast = kid_interval(real, fake, theta, CISettings(0.9, 8, 0), subsets=5, subset_size=size)
        monkeypatch.setattr(uncertainty, "KERNEL_BYTES", 0)
        slow = kid_interval(real, fake, theta, CISettings(0.9, 8, 0), subsets=5, subset_size=size)
        monkeypatch.undo()
        assert fast["lo"] == pytest.approx(slow["lo"], rel=1e-9, abs=1e-12)
        assert fast["hi"] == pytest.approx(slow["hi"], rel=1e-9, abs=1e-12)


def test_bootstrap_interval_coverage_and_determinism():
    hit = 0
    for r in range(100):
        v = np.random.default_rng(r).normal(3.0, 1.0, 200)
        ci = bootstrap_interval(v, CISettings(0.9, 500, r))
        hit += ci["lo"] <= 3.0 <= ci["hi"]
    assert 0.8 <= hit / 100 <= 0.97
    v = np.random.default_rng(0).normal(size=50)
    assert bootstrap_interval(v, CISettings(0.95, 300, 1)) == bootstrap_interval(v, CISettings(0.95, 300, 1))
    assert bootstrap_interval(v, CISettings(0.95, 300, 1)) != bootstrap_interval(v, CISettings(0.95, 300, 2))
    const = bootstrap_interval(np.zeros(30), CISettings(0.95, 100, 0))
    assert const["lo"] == const["hi"] == 0.0


def test_fold_mean_is_r_precision_statistic():
    hits = np.random.default_rng(0).random(103) < 0.3
    want = np.mean([p.mean() for p in np.array_split(hits.astype(float), 10)])
    assert fold_mean(10)(hits) == pytest.approx(want)
    two = np.stack([hits, ~hits]).astype(float)
    assert np.allclose(fold_mean(10)(two, axis=-1), [want, 1 - want])


# --------------------------------------------------------------------------- specs and options

def _inputs(real, fake, **opts):
    from facemetrics.metrics.registry import MetricInputs

    class Ex:
        def fingerprint(self):
            return {"extractor": "toy", "logits": "toy"}

    o = SimpleNamespace(preset="clean", seed=0, kid_subsets=5, kid_subset_size=20, is_splits=2, **opts)
    inp = MetricInputs(options=o, extractors={"inception": Ex()})
    for side, x in (("real", real), ("fake", fake)):
        inp.stats[(side, "inception", "pool")] = FeatureStats.from_features(x)
        inp.rows[(side, "inception", "pool")] = x
    inp.rows[("fake", "inception", "logits")] = fake[:, :5] * 3
    return inp


def test_specs_attach_intervals_and_ci_zero_turns_them_off():
    from facemetrics.metrics.registry import compute_all, resolve

    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((40, 6)), rng.standard_normal((40, 6)) + 0.2
    on = compute_all(resolve("fid,kid,fid_inf,is_inf"), _inputs(real, fake, ci=0.9, ci_draws=10))
    assert on["fid"].ci["level"] == 0.9 and on["fid"].ci["draws"] == 10
    assert on["kid"].ci["lo"] <= on["kid"].ci["hi"]
    assert on["fid_inf"].ci is None and len(on["fid_inf"].details["sizes"]) == 15
    off = compute_all(resolve("fid,kid"), _inputs(real, fake, ci=0))
    assert off["fid"].ci is None and off["kid"].ci is None
    assert off["fid"].value == on["fid"].value and "ci" in off["fid"].to_dict()


def test_bad_level_names_the_flag():
    from facemetrics.errors import FacemetricsError
    from facemetrics.metrics.uncertainty import check_level

    for bad in (1.0, 95, -0.1):
        with pytest.raises(FacemetricsError) as e:
            check_level(bad)
        assert e.value.param == "--ci"
    check_level(0)


# --------------------------------------------------------------------------- FID∞ / IS∞

def test_fit_inverse_n_recovers_a_line():
    from facemetrics.metrics.extrapolated import fit_inverse_n

    n = np.array([100.0, 200, 400, 800])
    fit = fit_inverse_n(n, 2.5 + 300 / n)
    assert fit["intercept"] == pytest.approx(2.5) and fit["slope"] == pytest.approx(300) and fit["rms"] < 1e-9


def test_fid_inf_closer_to_closed_form_truth_than_fid_at_n():
    """64-d Gaussians, n = 500 per side: FID_500 is biased up by several units; FID∞ removes most of it,
    on every one of 5 data sets."""
    from facemetrics.metrics.extrapolated import fid_infinity

    d, n = 64, 500
    rng0 = np.random.default_rng(7)
    a, b = rng0.standard_normal((d, d)), rng0.standard_normal((d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.1 * np.eye(d)
    mu1, mu2 = np.zeros(d), rng0.standard_normal(d) * 0.2
    truth = frechet_distance(mu1, s1, mu2, s2)
    err_n, err_inf = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x, y = rng.multivariate_normal(mu1, s1, n), rng.multivariate_normal(mu2, s2, n)
        res = fid_infinity(y, real=x, seed=seed)
        assert res.details["sizes"][0] == 100 and res.details["sizes"][-1] == 500 and len(res.details["sizes"]) == 15
        assert res.details["slope"] > 0
        err_n.append(abs(_fid_rows(x, y) - truth))
        err_inf.append(abs(res.value - truth))
    assert all(i < 0.5 * e for i, e in zip(err_inf, err_n)), (err_inf, err_n)
    again = fid_infinity(y, real=x, seed=4)
    assert again.value == res.value and again.details == res.details


def test_is_inf_closer_to_population_is_than_is_at_n():
    """A fixed 1000-class softmax model: IS of 500 images (one split) is biased down by p̂(y) estimated from
    them; IS∞ removes most of the bias on average over 6 data sets. The population IS
    exp(E Σ p log p − Σ p̄ log p̄) comes from 200k images, in chunks."""
    from facemetrics.metrics.extrapolated import is_infinity
    from facemetrics.metrics.inception_score import inception_score, softmax

    w = np.random.default_rng(11).standard_normal((16, 1000)) * 0.8

    def logits(n, seed):
        return np.random.default_rng(seed).standard_normal((n, 16)) @ w

    ent, pbar = 0.0, 0.0
    for c in range(20):
        p = softmax(logits(10_000, 1000 + c))
        ent += (p * np.log(p)).sum(axis=1).mean() / 20
        pbar = pbar + p.mean(axis=0) / 20
    truth = float(np.exp(ent - (pbar * np.log(pbar)).sum()))
    err_n, err_inf = [], []
    for seed in range(6):
        lg = logits(500, seed)
        err_n.append(inception_score(lg, splits=1).value - truth)
        err_inf.append(is_infinity(lg, seed=seed).value - truth)
    assert np.mean(err_n) < 0 and abs(np.mean(err_inf)) < 0.5 * abs(np.mean(err_n)), (err_inf, err_n)
    assert np.mean(np.abs(err_inf)) < 0.7 * np.mean(np.abs(err_n)), (err_inf, err_n)


# --------------------------------------------------------------------------- CLI

def test_cli_shows_intervals_records_them_and_ci_zero_removes_them(lfw_small, tmp_path):
    import json

    from click.testing import CliRunner

    from facemetrics.cli.main import cli

    a, b = (str(p) for p in lfw_small)
    out = tmp_path / "rec.json"
    r = CliRunner().invoke(cli, ["score", a, b, "--metrics", "fid,kid,fid_inf", "--kid-subset-size", "4",
                                 "--ci", "0.9", "--ci-draws", "20", "--seed", "2", "-q", "--json", str(out)])
    assert r.exit_code == 0, r.output
    fid_line = next(line for line in r.stdout.splitlines() if line.startswith("fid ↓"))
    rec = json.loads(out.read_text())
    ci = rec["metrics"]["fid"]["ci"]
    assert f"[{ci['lo']:.4g}, {ci['hi']:.4g}]" in fid_line and "90% intervals" in r.stdout
    assert ci["draws"] == 20 and ci["seed"] == 2 and ci["level"] == 0.9 and ci["subsample"] == {"real": 6, "fake": 6}
    assert rec["metrics"]["kid"]["ci"]["method"].startswith("subsampling")
    assert len(rec["metrics"]["fid_inf"]["details"]["sizes"]) >= 3
    r0 = CliRunner().invoke(cli, ["score", a, b, "--metrics", "fid", "--ci", "0", "-q", "--json", "-"])
    assert r0.exit_code == 0, r0.output
    rec0 = json.loads(r0.stdout)
    assert rec0["metrics"]["fid"]["ci"] is None and rec0["metrics"]["fid"]["value"] == rec["metrics"]["fid"]["value"]
    r0t = CliRunner().invoke(cli, ["score", a, b, "--metrics", "fid", "--ci", "0", "-q"])
    assert "[" not in r0t.stdout.splitlines()[0] and "intervals" not in r0t.stdout
    bad = CliRunner().invoke(cli, ["score", a, b, "--ci", "1.5", "-q"])
    assert bad.exit_code == 2 and "--ci" in bad.output
    # REAL as statistics without features: only FAKE subsampled, and the record says so
    npz = tmp_path / "real.npz"
    assert CliRunner().invoke(cli, ["stats", a, "-o", str(npz), "-q"]).exit_code == 0
    rs = CliRunner().invoke(cli, ["score", str(npz), b, "--metrics", "fid", "--ci-draws", "10", "-q", "--json", "-"])
    assert rs.exit_code == 0, rs.output
    ci = json.loads(rs.stdout)["metrics"]["fid"]["ci"]
    assert ci["sides"] == ["fake"] and "only FAKE" in ci["note"]
