"""REAL as the mu/sigma .npz of pytorch-fid / clean-fid, under an asserted protocol (issue 3, item 6)."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facemetrics.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def score_json(*args) -> dict:
    r = run("score", *args, "--json", "-", "-q")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def folder_fid(lfw_small) -> float:
    a, b = lfw_small
    return score_json(a, b)["metrics"]["fid"]["value"]


def test_cleanfid_npz_gives_the_folder_fid(lfw_small, folder_fid, cleanfid_inception, tmp_path):
    """Statistics written the way clean-fid's make_custom_stats does, by clean-fid itself."""
    import torch
    from cleanfid import fid as cfid

    a, b = lfw_small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cfid.build_feature_extractor("clean", torch.device("cpu"), use_dataparallel=False)
        feats = cfid.get_folder_features(str(a), model, num_workers=0, batch_size=12, device=torch.device("cpu"),
                                         mode="clean", verbose=False)
    assert feats.shape == (12, 2048)
    ref = tmp_path / "cleanfid_custom_stats.npz"
    np.savez(ref, mu=np.mean(feats, axis=0), sigma=np.cov(feats, rowvar=False))

    rec = score_json(ref, b, "--real-stats-preset", "clean")
    fid = rec["metrics"]["fid"]["value"]
    assert fid == pytest.approx(folder_fid, rel=1e-5), (fid, folder_fid)
    assert rec["real"] == {"path": str(ref), "kind": "foreign-stats", "n": None, "content_sha256": None,
                           "sha256": hashlib.sha256(ref.read_bytes()).hexdigest(), "protocol_asserted": True,
                           "preset_asserted": "clean"}
    assert rec["metrics"]["fid"]["details"]["real_protocol"] == {"asserted": True, "verified": False,
                                                                 "preset": "clean"}
    assert rec["metrics"]["fid"]["details"]["n_real"] is None
    assert any("asserted with --real-stats-preset, not verified" in w for w in rec["warnings"])
    # the table says so too
    r = run("score", ref, b, "--real-stats-preset", "clean", "-q")
    assert r.exit_code == 0 and "foreign-stats, n=unknown, protocol asserted" in r.stdout


@pytest.fixture(scope="module")
def own_mu_sigma(lfw_small, tmp_path_factory) -> Path:
    """pytorch-fid's layout (savez of mu, sigma) of this tool's own statistics of REAL."""
    from facemetrics.api import compute_stats

    st, _, _ = compute_stats(str(lfw_small[0]), progress=False, features=False)
    path = tmp_path_factory.mktemp("foreign") / "pytorch_fid_stats.npz"
    np.savez(path, mu=st.mean, sigma=st.cov)
    return path


def test_own_statistics_as_mu_sigma_give_the_same_fid(lfw_small, folder_fid, own_mu_sigma):
    rec = score_json(own_mu_sigma, lfw_small[1], "--real-stats-preset", "clean")
    assert rec["metrics"]["fid"]["value"] == pytest.approx(folder_fid, rel=1e-9)


def _usage_error(*args) -> str:
    r = run("score", *args, "-q")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return " ".join(r.output.split())  # click wraps long messages


def test_mu_sigma_without_the_flag_says_which_flag_to_add(lfw_small, own_mu_sigma):
    msg = _usage_error(own_mu_sigma, lfw_small[1])
    assert "holds only mu and sigma" in msg and "--real-stats-preset clean|tf1|pytorch-fid" in msg


def test_asserted_preset_must_be_the_run_preset(lfw_small, own_mu_sigma):
    msg = _usage_error(own_mu_sigma, lfw_small[1], "--real-stats-preset", "tf1")
    assert "--preset clean" in msg and "add --preset tf1" in msg


def test_kid_refused_for_mu_sigma(lfw_small, own_mu_sigma):
    msg = _usage_error(own_mu_sigma, lfw_small[1], "--real-stats-preset", "clean", "--metrics", "fid,kid")
    assert "KID needs per-image features of REAL" in msg and "holds only their mean and covariance" in msg


def test_flag_only_for_mu_sigma_files(lfw_small, tmp_path):
    a, b = lfw_small
    assert "is not one" in _usage_error(a, b, "--real-stats-preset", "clean")
    st = tmp_path / "ours.npz"
    assert run("stats", a, "-o", st, "-q").exit_code == 0
    assert "a facemetrics statistics file records its protocol" in _usage_error(st, b, "--real-stats-preset",
                                                                                 "clean")


@pytest.mark.parametrize("case, expected", [
    ("dims", "64-dimensional, this run's extractor gives 2048"),
    ("shape", "mu must have shape (d,) and sigma (d, d)"),
    ("nan", "NaN or infinite"),
    ("asymmetric", "sigma is not symmetric"),
    ("negative", "negative variances"),
])
def test_bad_mu_sigma_are_refused(lfw_small, tmp_path, case, expected):
    rng = np.random.default_rng(0)
    d = 64 if case == "dims" else 2048
    x = rng.normal(size=(40, d))
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    if case == "shape":
        sigma = sigma[:, :-1]
    elif case == "nan":
        mu[3] = np.nan
    elif case == "asymmetric":
        sigma[0, 1] += 0.5
    elif case == "negative":
        sigma[5, 5] = -1.0
    path = tmp_path / f"{case}.npz"
    np.savez(path, mu=mu, sigma=sigma)
    msg = _usage_error(path, lfw_small[1], "--real-stats-preset", "clean")
    assert str(path) in msg and expected in msg
