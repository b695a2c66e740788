"""Sufficient statistics of a feature set: n, Σx, Σxxᵀ in float64.

They merge by addition, so any batch size, any order and any sharding give the
same mean and covariance. The covariance is the unbiased one,
Σ = (Σxxᵀ − n μμᵀ) / (n − 1), as numpy's ``np.cov`` (and clean-fid) compute it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError

STATS_SCHEMA = "facemetrics.stats/1"


@dataclass
class FeatureStats:
    n: int
    sum: np.ndarray  # (d,) float64
    sum_outer: np.ndarray  # (d, d) float64
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, dims: int, meta: dict[str, Any] | None = None) -> "FeatureStats":
        return cls(0, np.zeros(dims), np.zeros((dims, dims)), dict(meta or {}))

    @classmethod
    def from_features(cls, feats: np.ndarray, meta: dict[str, Any] | None = None,
                      chunk: int = 1024) -> "FeatureStats":
        feats = np.asarray(feats)
        st = cls.empty(feats.shape[1], meta)
        for i in range(0, feats.shape[0], chunk):
            st.update(feats[i:i + chunk])
        return st

    @property
    def dims(self) -> int:
        return int(self.sum.shape[0])

    def update(self, batch: np.ndarray) -> None:
        """Add a (b, d) batch of features (accumulated in float64)."""
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"expected (b, {self.dims}) features, got {x.shape}")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.dims != self.dims:
            raise FacemetricsError(f"cannot merge statistics of {self.dims} and {other.dims} dimensions")
        return FeatureStats(self.n + other.n, self.sum + other.sum, self.sum_outer + other.sum_outer,
                            dict(self.meta))

    __add__ = merge

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (n − 1 in the denominator)."""
        if self.n < 2:
            raise FacemetricsError(f"need at least 2 images for a covariance, have {self.n}")
        mu = self.mean
        c = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (c + c.T) / 2

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, features: np.ndarray | None = None) -> None:
        """Write an .npz atomically: n, sum, sum_outer, mu, sigma (clean-fid's names; n ≥ 2 only) and meta.

        ``features`` (optional) are stored too, so KID can use the file as REAL.
        """
        from facemetrics.storage.atomic import atomic_save_npz

        arrays = dict(schema=np.array(STATS_SCHEMA), n=np.array(self.n), sum=self.sum,
                      sum_outer=self.sum_outer, meta=np.array(json.dumps(self.meta, sort_keys=True)))
        if self.n >= 2:  # a shard may hold fewer images than a covariance needs
            arrays.update(mu=self.mean, sigma=self.cov)
        if features is not None:
            arrays["features"] = np.asarray(features, dtype=np.float32)
        atomic_save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path, param: str | None = None) -> tuple["FeatureStats", np.ndarray | None]:
        """Read a file written by :meth:`save`; returns (stats, features or None)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if "schema" not in z.files or str(z["schema"]) != STATS_SCHEMA:
                    foreign = " (it holds only mu and sigma, as pytorch-fid and clean-fid write)" \
                        if {"mu", "sigma"} <= set(z.files) else ""
                    raise FacemetricsError(
                        f"{path} is not a facemetrics statistics file{foreign} (make one with `facemetrics stats`)",
                        param)
                st = cls(int(z["n"]), z["sum"].astype(np.float64), z["sum_outer"].astype(np.float64),
                         json.loads(str(z["meta"])))
                feats = z["features"] if "features" in z.files else None
        except FacemetricsError:
            raise
        except Exception as e:
            raise FacemetricsError(f"cannot read statistics file {path}: {e}", param) from None
        return st, feats


# ---------------------------------------------------------------------- foreign statistics
#: relative tolerance of the symmetry check of a foreign covariance: max|Σ − Σᵀ| ≤ tol · max|Σ|
SYMMETRY_RTOL = 1e-5


@dataclass
class GaussianStats:
    """Mean and covariance only, as pytorch-fid, clean-fid and TTUR publish them (``mu``, ``sigma``).

    Enough for FID; the number of images is unknown (``n`` is None), and there
    are no per-image features.
    """

    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64, symmetric
    n: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.mu.shape[0])

    @property
    def mean(self) -> np.ndarray:
        return self.mu

    @property
    def cov(self) -> np.ndarray:
        return self.sigma


def stats_file_kind(path: str | Path) -> str:
    """``"facemetrics"`` (a :meth:`FeatureStats.save` file), ``"mu-sigma"`` (only FID's ``mu`` and ``sigma``,
    no facemetrics schema: pytorch-fid, clean-fid, TTUR) or ``"unknown"`` (anything else, unreadable included)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
    except Exception:
        return "unknown"
    if "schema" in files:
        return "facemetrics"
    return "mu-sigma" if {"mu", "sigma"} <= files else "unknown"


def load_mu_sigma(path: str | Path, dims: int, param: str | None = None) -> GaussianStats:
    """Read and check the ``mu`` (d,) and ``sigma`` (d, d) of a foreign FID statistics file.

    Checks: numeric, finite, ``d == dims``, Σ symmetric to :data:`SYMMETRY_RTOL`
    (relative to max|Σ|) with a non-negative diagonal. Σ is returned
    symmetrised, (Σ + Σᵀ)/2, in float64. ``meta["sha256"]`` is the file's sha256.
    """
    from facemetrics.storage.digest import file_sha256

    try:
        with np.load(path, allow_pickle=False) as z:
            mu, sigma = np.asarray(z["mu"]), np.asarray(z["sigma"])
        digest = file_sha256(path)
    except Exception as e:
        raise FacemetricsError(f"cannot read statistics file {path}: {e}", param) from None

    def bad(why: str) -> FacemetricsError:
        return FacemetricsError(f"{path}: {why}; it cannot be FID statistics of this run", param)

    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise bad(f"mu and sigma must be numeric, are {mu.dtype} and {sigma.dtype}")
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise bad(f"mu must have shape (d,) and sigma (d, d); they have {mu.shape} and {sigma.shape}")
    if mu.shape[0] != dims:
        raise bad(f"its features are {mu.shape[0]}-dimensional, this run's extractor gives {dims}")
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise bad("mu or sigma holds NaN or infinite values")
    scale = float(np.abs(sigma).max()) or 1.0
    asym = float(np.abs(sigma - sigma.T).max())
    if asym > SYMMETRY_RTOL * scale:
        raise bad(f"sigma is not symmetric (max |sigma - sigma.T| = {asym:.3g}, max |sigma| = {scale:.3g}), so it "
                  "is no covariance matrix")
    if float(np.diag(sigma).min()) < -SYMMETRY_RTOL * scale:
        raise bad("sigma has negative variances on its diagonal, so it is no covariance matrix")
    return GaussianStats(mu, (sigma + sigma.T) / 2, None, {"sha256": digest})
