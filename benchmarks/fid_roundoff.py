"""How far each Fréchet route is from the exact value when n < 2048 (rank-deficient covariances).

On real LFW Inception pool features (``Name_0001.jpg``, two disjoint sets), for each n:

* **eigh (facemetrics)**: :func:`facemetrics.metrics.fid.fid_from_stats`, the route of DESIGN.md §3
  (√Σ₁ from a full ``eigh``, then the eigenvalues of √Σ₁ Σ₂ √Σ₁);
* **rank-bounded eigh** (not in the product; defined here): only the n − 1 largest eigenpairs of
  Σ₁ (LAPACK ``syevr`` on a subset), the bracket √Λ Vᵀ Σ₂ V √Λ decomposed: the same matrix in Σ₁'s
  eigenbasis without its null space;
* **exact**: the factored value, tr √(Σ₁Σ₂) = ‖F₁F₂ᵀ‖_* with F the centred rows / √(n − 1)
  (an n × n SVD, no d × d eigen problem; ``facemetrics.metrics.fid.CovFactor``);
* **clean-fid** (``cleanfid.fid.frechet_distance``) and **pytorch-fid**
  (``calculate_frechet_distance``): ``scipy.linalg.sqrtm`` of Σ₁Σ₂,

all on the same float64 statistics, and prints each one's relative difference to the exact value
and to clean-fid, with the seconds of the two eigh routes.

    python benchmarks/fid_roundoff.py [--sizes 24,100,300,700] [--features /tmp/lfw-features.npz]

``--features`` keeps the extracted features between runs (written if missing).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def lfw_features(data: Path, n: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Pool features (float64) of two disjoint sets of ``n`` LFW faces: people 0..n-1 and 3000..3000+n-1."""
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if len(z["a"]) >= n:
                return z["a"][:n], z["b"][:n]
    from facemetrics.extractors.inception import InceptionExtractor
    from facemetrics.imaging.images import scan
    from facemetrics.pipeline.features import extract

    root = data / "lfw" / "deepfunneled"
    files = sorted(p / f"{p.name}_0001.jpg" for p in root.iterdir() if p.is_dir())
    out = []
    with tempfile.TemporaryDirectory(prefix="fm-roundoff-") as tmp:
        for side, chosen in (("a", files[:n]), ("b", files[3000:3000 + n])):
            (Path(tmp) / side).mkdir()
            for f in chosen:
                (Path(tmp) / side / f.name).symlink_to(f)
            res = extract(scan(str(Path(tmp) / side)), [InceptionExtractor()], progress=False, cache=False)
            out.append(res.outputs["inception"]["pool"].astype(np.float64))
    if cache is not None:
        np.savez(cache, a=out[0], b=out[1])
    return out[0], out[1]


def rank_bounded_trace(s1: np.ndarray, s2: np.ndarray, rank: int) -> float:
    """Σ √λ of √Λ Vᵀ Σ₂ V √Λ over the ``rank`` largest eigenpairs (V, Λ) of Σ₁."""
    import scipy.linalg

    d = s1.shape[0]
    w, v = scipy.linalg.eigh((s1 + s1.T) / 2, subset_by_index=[d - rank, d - 1], driver="evr")
    b = v * np.sqrt(np.clip(w, 0, None))
    m = b.T @ s2 @ b
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="24,100,300,700")
    ap.add_argument("--features", type=Path, default=None)
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data"))))
    a = ap.parse_args()
    from cleanfid.fid import frechet_distance as clean_fd
    from pytorch_fid.fid_score import calculate_frechet_distance as pytorch_fd

    from facemetrics.metrics.fid import CovFactor, fid_from_stats, frechet_distance
    from facemetrics.stats import FeatureStats

    sizes = [int(s) for s in a.sizes.split(",")]
    fa, fb = lfw_features(a.data, max(sizes), a.features)
    print("| n | exact (factored) | eigh (facemetrics) − exact | rank-bounded − exact | clean-fid − exact | "
          "pytorch-fid − exact | eigh − clean-fid | rank-bounded − clean-fid | eigh s | rank-bounded s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        x, y = fa[:n], fb[:n]
        sx, sy = FeatureStats.from_features(x), FeatureStats.from_features(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n < 2048: the rank-deficiency warning is the point here
            t = time.perf_counter()
            ours = fid_from_stats(sx, sy).value
            t_ours = time.perf_counter() - t
            clean = float(clean_fd(sx.mean, sx.cov, sy.mean, sy.cov))
            pyt = float(pytorch_fd(sx.mean, sx.cov, sy.mean, sy.cov))
        base = float(((sx.mean - sy.mean) ** 2).sum() + np.trace(sx.cov) + np.trace(sy.cov))
        t = time.perf_counter()
        bounded = base - 2 * rank_bounded_trace(sx.cov, sy.cov, min(n - 1, sx.dims))
        t_bounded = time.perf_counter() - t
        exact = frechet_distance(*CovFactor.of_rows(x), *CovFactor.of_rows(y))

        def rel(v: float, ref: float) -> str:
            return f"{(v - ref) / ref:+.1e}"

        print(f"| {n} | {exact:.9f} | {rel(ours, exact)} | {rel(bounded, exact)} | {rel(clean, exact)} | "
              f"{rel(pyt, exact)} | {rel(ours, clean)} | {rel(bounded, clean)} | {t_ours:.2f} | {t_bounded:.2f} |")


if __name__ == "__main__":
    main()
