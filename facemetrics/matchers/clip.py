"""CLIP matcher on open_clip (``pip install open-clip-torch``).

Weights come from one of three places:

* an open_clip pretrained tag (``clip:ViT-B-32:openai``): open_clip downloads the
  file into its cache (Hugging Face hub or the tag's URL); without network the
  failure becomes a :class:`FacemetricsError` that says which file to fetch and
  how to pass it;
* a local weights file for a named architecture (``clip:ARCH:/path/file.bin``):
  an open_clip / OpenAI-format state dict (``.bin``, ``.pt``, ``.pth`` or
  ``.safetensors``);
* a local folder in open_clip's hub layout (``clip:/path/folder``) holding
  ``open_clip_config.json`` and the weights, i.e. a downloaded copy of a
  Hugging Face ``hf-hub:`` model repository.

Images are preprocessed with the model's own evaluation transform
(``open_clip.image_transform_v2`` of the model's preprocess config: resize of
the shortest side, centre crop, the tag's mean/std and interpolation); captions
with the model's tokenizer (start and end tokens included in
``context_length``, 77 for the OpenAI models; longer captions are truncated,
keeping the end token).

OpenAI's checkpoints were trained with QuickGELU: with a tag the activation is
taken from the tag's config; with a local OpenAI file name the ``-quickgelu``
architecture (e.g. ``ViT-B-32-quickgelu``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError, WeightsNotFoundError
from facemetrics.matchers.base import Matcher
from facemetrics.storage.torchfile import unsafe_pickle_error
from facemetrics.nets.weights import sha256_file

def _quickgelu_arch(arch: str) -> str:
    import open_clip

    cand = f"{arch}-quickgelu"
    return cand if cand in open_clip.list_models() else arch


class ClipMatcher(Matcher):
    """An open_clip model used as an image/caption matcher.

    Exactly one of ``tag``, ``weights_file`` (both with ``arch``) or
    ``local_dir`` is given. Nothing is loaded until :meth:`load` or the first
    encode.
    """

    name = "clip"

    def __init__(
        self,
        arch: str | None = None,
        *,
        tag: str | None = None,
        weights_file: str | os.PathLike | None = None,
        local_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        cache_dir: str | None = None,
        spec: str | None = None,
    ) -> None:
        given = [x is not None for x in (tag, weights_file, local_dir)]
        if sum(given) != 1:
            raise ValueError("give exactly one of tag, weights_file, local_dir")
        if local_dir is None and not arch:
            raise ValueError("arch is required with a tag or a weights file")
        self.arch = arch
        self.tag = tag
        self.weights_file = Path(weights_file) if weights_file is not None else None
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.device = device
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.spec = spec or self._default_spec()
        self._model = None
        self._transform = None
        self._tokenizer = None
        self._resolved: Path | None = None
        self._quick_gelu = False
        self._pp_overlay: dict[str, Any] = {}

    def _default_spec(self) -> str:
        if self.local_dir is not None:
            return f"clip:{self.local_dir}"
        return f"clip:{self.arch}:{self.tag if self.tag is not None else self.weights_file}"

    # ------------------------------------------------------------------ weights
    def resolve_weights(self) -> Path:
        """The local weights file (downloading a tag's file through open_clip if needed)."""
        if self._resolved is not None:
            return self._resolved
        import open_clip

        if self.weights_file is not None:
            if not self.weights_file.is_file():
                raise FacemetricsError(f"CLIP weights file not found: {self.weights_file}", "--matcher")
            self._resolved = self.weights_file
        elif self.local_dir is not None:
            from open_clip.factory import _find_checkpoint_in_dir

            found = _find_checkpoint_in_dir(self.local_dir)
            if found is None:
                raise FacemetricsError(
                    f"no CLIP weights (*.safetensors, *.bin, *.pth) in {self.local_dir}", "--matcher"
                )
            self._resolved = Path(found)
        else:
            cfg = open_clip.get_pretrained_cfg(self.arch, self.tag)
            if not cfg:
                tags = ", ".join(open_clip.list_pretrained_tags_by_model(self.arch)) or "none"
                raise FacemetricsError(
                    f"unknown open_clip pretrained tag {self.tag!r} for {self.arch} (known tags: {tags})",
                    "--matcher",
                )
            self._quick_gelu = bool(cfg.get("quick_gelu", False))
            self._pp_overlay = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
            try:
                path = open_clip.download_pretrained(cfg, cache_dir=self.cache_dir)
            except Exception as e:  # network, hub or file-system failures
                raise self._download_error(cfg, e) from None
            if not path or not Path(path).is_file():
                raise self._download_error(cfg, RuntimeError("open_clip returned no file"))
            self._resolved = Path(path)
        return self._resolved

    def _download_error(self, cfg: dict, err: BaseException) -> WeightsNotFoundError:
        where = []
        if cfg.get("hf_hub"):
            hub = cfg["hf_hub"].rstrip("/")
            where.append(f"https://huggingface.co/{hub} (file open_clip_pytorch_model.bin or open_clip_model.safetensors)")
        if cfg.get("url"):
            where.append(cfg["url"])
        arch = _quickgelu_arch(self.arch) if cfg.get("quick_gelu") else self.arch
        msg = (
            f"could not get the weights of open_clip {self.arch} tag {self.tag!r}: tried open_clip's download "
            f"into its cache ({self.cache_dir or 'the Hugging Face hub cache'}) from "
            f"{' or '.join(where) or 'nowhere (the tag names no source)'}; error: {str(err).splitlines()[0][:300]}. "
            f"Without network here, download that file on a machine with network and pass "
            f"--matcher clip:{arch}:/path/to/the/file"
        )
        return WeightsNotFoundError(msg, "--matcher")

    # ------------------------------------------------------------------ loading
    def load(self, device: str | None = None) -> None:
        """Build the model, its evaluation transform and its tokenizer (idempotent)."""
        if device is not None and device != self.device:
            self.device = device
            if self._model is not None:
                self._model.to(device)
        if self._model is not None:
            return
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        path = self.resolve_weights()
        try:
            if self.local_dir is not None:
                name = f"local-dir:{self.local_dir}"
                model = open_clip.create_model(name, device=self.device)
            else:
                model = open_clip.create_model(
                    self.arch,
                    pretrained=str(path),
                    device=self.device,
                    force_quick_gelu=self._quick_gelu,
                    force_preprocess_cfg=self._pp_overlay or None,
                )
                name = self.arch
        except FacemetricsError:
            raise
        except Exception as e:
            # open_clip reads .bin/.pt/.pth with torch.load(weights_only=True): a pickle that
            # needs code is refused there; say so instead of "not a state dict"
            unsafe = unsafe_pickle_error(e, Path(path), "CLIP weights", "--matcher")
            if unsafe is not None:
                raise unsafe from None
            raise FacemetricsError(
                f"could not load CLIP weights {path} into {self.arch or self.local_dir}: "
                f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''} "
                f"(is the file an open_clip/OpenAI state dict of that architecture? "
                f"OpenAI checkpoints need the -quickgelu architecture)",
                "--matcher",
            ) from None
        model.eval()
        self._model = model
        self._transform = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
        self._tokenizer = open_clip.get_tokenizer(name)
        self.max_tokens = int(getattr(self._tokenizer, "context_length", 0) or 0) or None

    @property
    def model(self):
        self.load()
        return self._model

    @property
    def transform(self):
        self.load()
        return self._transform

    @property
    def tokenizer(self):
        self.load()
        return self._tokenizer

    # ------------------------------------------------------------------ encoding
    def image_preprocessor(self) -> "_ClipImagePrep":
        """open_clip's evaluation transform of this model (resize, centre crop, normalise) as a
        picklable ``img -> (3, S, S) float32``; loads the model (its config fixes the transform)."""
        self.load()
        return _ClipImagePrep(self._transform)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        self.load()
        out = []
        for i in range(0, len(batch), self.batch_size):
            with torch.no_grad():
                emb = self._model.encode_image(torch.from_numpy(np.ascontiguousarray(batch[i : i + self.batch_size]))
                                               .to(self.device))
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out, 0) if out else np.zeros((0, self._embed_dim()), np.float32)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        prep = self.image_preprocessor()
        out = [self.encode_preprocessed(np.stack([prep(im) for im in images[i : i + self.batch_size]]))
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out, 0) if out else np.zeros((0, self._embed_dim()), np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        self.load()
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[i : i + self.batch_size]))
            with torch.no_grad():
                emb = self._model.encode_text(tokens.to(self.device))
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out, 0) if out else np.zeros((0, self._embed_dim()), np.float32)

    def _embed_dim(self) -> int:
        proj = getattr(self._model, "text_projection", None)
        return int(proj.shape[-1]) if proj is not None else 0

    def token_counts(self, texts: list[str]) -> list[int] | None:
        """Tokens per caption with start and end tokens (open_clip's BPE tokenizer only)."""
        self.load()
        tok = self._tokenizer
        if not hasattr(tok, "encode") or getattr(tok, "reduction_fn", None) is not None:
            return None
        return [len(tok.encode(t)) + 2 for t in texts]

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        import open_clip

        pp = dict(self._model.visual.preprocess_cfg)
        pp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()}
        return {
            "kind": "clip",
            "arch": self.arch or "local-dir",
            "pretrained_tag": self.tag,
            "weights_file": self._resolved.name,
            "weights_sha256": sha256_file(self._resolved),
            "quick_gelu": self._quick_gelu,
            "preprocess": pp,
            "context_length": self.max_tokens,
            "open_clip_version": getattr(open_clip, "__version__", "unknown"),
        }


class _ClipImagePrep:
    """Picklable per-image CLIP preprocessing: uint8 H×W×3 → PIL → open_clip transform → float32 array."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        return self.transform(Image.fromarray(np.asarray(img, dtype=np.uint8))).numpy()
