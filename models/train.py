"""Training: DAMSM stage (when the run has DAMSM encoders), then AttnGAN, exactly resumable.

Steps are global: ``0 .. damsm_steps-1`` train the DAMSM encoders (BiLSTM and/or the
image encoder; a frozen CLIP text tower stays fixed), ``damsm_steps .. damsm_steps +
train.steps - 1`` train G and the Ds with the text encoder and DAMSM frozen (AttnGAN).
Each GAN step: D update per stage, then one G update (adversarial terms of all stages +
λ · matching loss on the last stage + KL), then the EMA update of G
(``ema = d · ema + (1 − d) · G`` on parameters, buffers copied).

Exact resume: a checkpoint holds every network, optimiser and grad-scaler state, the
step, and the CPU/CUDA/NumPy/Python RNG states; batches are a pure function of
``(seed, phase, epoch, index)`` (see :mod:`models.data`) and the data loader draws from
a private generator. Sample grids and evaluation run under ``torch.random.fork_rng``.

Under torchrun every rank runs this trainer on its block of each global batch and the
run equals one process on the whole batch (:mod:`models.parallel`); rank 0 writes files.

Run folder: ``config.yaml``, ``last.pt``, ``log.jsonl`` (one JSON object per line:
``{"step", "phase", "losses": {...}, "lr", "steps_per_s", "time"}``, evaluation
lines ``{"step", "gan_step", "metrics": {...}}``, event lines ``{"step", "event"}``),
``split.json``, ``test_real.txt`` and ``real_test/`` (symlinks to the held-out real
images), ``grids/`` (sample grids of the EMA generator on fixed captions and noise).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemetrics.storage.atomic import atomic_write_text
from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import save_torch
from models import config as C
from models.data import load_records, make_loader, record_to_dict, split_records
from models.losses import (clip_d_loss, clip_match_loss, d_loss, d_loss_uncond, damsm_loss, g_adv_loss, g_adv_uncond,
                           g_clip_cond, kl_loss)
from models.parallel import SINGLE, Parallel, convert_for_parallel
from models.system import CHECKPOINT_FORMAT, System, load_checkpoint, resolve_device

PHASE_DAMSM, PHASE_GAN = 0, 1


class NonFiniteLoss(RuntimeError):
    pass


def _numpy_rng_state() -> dict:
    """NumPy's global MT19937 state as a tensor and plain numbers (loads with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_rng_state(st: dict) -> None:
    """Restore the state :func:`_numpy_rng_state` stored."""
    np.random.set_state((st["name"], st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"],
                         st["gauss"]))


def _rng_state(device: torch.device) -> dict:
    """Every RNG the trainer draws from, as tensors and plain containers only."""
    version, internal, gauss = random.getstate()
    st = {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
          "python": {"version": version, "state": list(internal), "gauss": gauss}}
    if device.type == "cuda":
        # this process's device only: under torchrun every rank's device generator is in the same state
        st["cuda_device"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    """Restore the states :func:`_rng_state` stored."""
    torch.set_rng_state(st["torch"])
    _set_numpy_rng_state(st["numpy"])
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device.type == "cuda" and "cuda_device" in st:
        torch.cuda.set_rng_state(st["cuda_device"], device)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: dict, run_dir: Path, ck: dict | None = None, progress: bool = True,
                 parallel: Parallel = SINGLE) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.par = parallel
        self.progress = progress and parallel.is_main
        self.device = resolve_device(cfg["device"])
        if parallel.active and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", parallel.local_rank)
        if cfg["clip"]["freeze"] is False and not C.needs_damsm(cfg):
            raise FacemetricsError("clip.freeze=false trains the CLIP text tower in the DAMSM stage, and the "
                                   "clip-clip variant has none; keep clip.freeze=true", "--set clip.freeze")
        self.data_stats: dict = {}  # what the loader found (v1.0: images present/missing), logged at start
        records = load_records(cfg, self.data_stats)
        self.train_recs, self.test_recs = split_records(records, cfg["data"]["test_fraction"], cfg["data"]["split_seed"])
        if ck is not None:
            want = ck["split"]
            have = {"train": [r.key for r in self.train_recs], "test": [r.key for r in self.test_recs]}
            if have["train"] != want["train"] or have["test"] != want["test"]:
                raise FacemetricsError(
                    f"the data under {cfg['data']['root']} gives a different train/test split than the run "
                    "being resumed (was the data folder changed?)", "--data")
        self.damsm_steps = cfg["damsm"]["steps"] if C.needs_damsm(cfg) else 0
        parallel.local_size(cfg["train"]["batch_size"])
        if self.damsm_steps:
            parallel.local_size(cfg["damsm"]["batch_size"], "--set damsm.batch_size")
        parallel.check_same("the train/test split", [[r.key for r in self.train_recs], [r.key for r in self.test_recs]],
                            "--data")
        self.total_steps = self.damsm_steps + cfg["train"]["steps"]
        self.step = 0
        self.train_seconds = 0.0  # training wall time of earlier invocations (train.budget_minutes)
        self._t_run_start: float | None = None
        self.amp_dtype = self._amp_dtype()

        _seed_all(cfg["seed"])
        captions = [c.text for r in self.train_recs for c in r.captions]
        if ck is None:
            self.system = System.for_training(cfg, captions, self.device)
        else:
            from models.system import system_from_checkpoint

            self.system = system_from_checkpoint(ck, self.device, param="--resume")
        s = self.system
        if parallel.active:
            # global-batch batch norm and dropout in every network that trains; same start on every rank
            for net in (s.G, s.Ds, s.image_encoder, s.text_encoder):
                if net is not None:
                    convert_for_parallel(net, parallel)
            lstm = s.text_encoder if s.text_key == "lstm" else None  # CLIP is rebuilt from its seed/file
            parallel.broadcast_(t for m in (s.G, s.G_ema, s.Ds, s.image_encoder, lstm) if m is not None
                                for t in m.state_dict().values())
        self.identity_ids = torch.tensor(
            [sorted({r.identity for r in self.train_recs}).index(r.identity) for r in self.train_recs],
            device=self.device)
        from models.data import TrainSet

        self.dataset = TrainSet(self.train_recs, s.coders, cfg["model"]["resolution"], cfg["seed"])
        self._build_optimizers()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        if ck is not None:
            self._load_training_state(ck)
        # fixed grid captions/noise (held-out captions, one per image)
        grid_recs = sorted(self.test_recs, key=lambda r: r.key)[: cfg["train"]["grid_size"]]
        self.grid_texts = [r.captions[0].text for r in grid_recs]
        if cfg["train"]["eval_every"]:  # an evaluation set too small for R-precision fails now, not after DAMSM
            from models.evaluate import check_rprec_pool, eval_set

            t = cfg["train"]
            check_rprec_pool(eval_set(self.test_recs, t["eval_images"]), t["eval_rprec_negatives"],
                             t["eval_rprec_folds"], "--set train.eval_images")

    # ------------------------------------------------------------------ setup

    def _amp_dtype(self):
        amp = self.cfg["train"]["amp"]
        if amp == "off" or self.device.type != "cuda":
            if amp in ("bf16", "fp16") and self.device.type != "cuda":
                print(f"note: train.amp={amp} applies on CUDA only; running in float32", file=sys.stderr)
            return None
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _build_optimizers(self) -> None:
        cfg, s = self.cfg, self.system
        t = cfg["train"]
        betas = (t["beta1"], t["beta2"])
        self.opt_G = torch.optim.Adam(s.G.parameters(), lr=t["g_lr"], betas=betas)
        self.opt_Ds = [torch.optim.Adam(D.parameters(), lr=t["d_lr"], betas=betas) for D in s.Ds]
        # the CLIP discriminator's head trains at D's learning rate, from its switch on
        self.opt_clip_d = None if s.clip_d is None else torch.optim.Adam(s.clip_d.parameters(), lr=t["d_lr"],
                                                                          betas=betas)
        self.opt_E = None
        if self.damsm_steps:
            groups = [{"params": [p for p in s.image_encoder.parameters() if p.requires_grad],
                       "lr": cfg["damsm"]["lr"], "base_lr": cfg["damsm"]["lr"]}]
            if s.text_key == "lstm":
                groups.append({"params": list(s.text_encoder.parameters()), "lr": cfg["damsm"]["lr"],
                                "base_lr": cfg["damsm"]["lr"]})
            elif not cfg["clip"]["freeze"]:
                groups.append({"params": s.clip_text_parameters(), "lr": cfg["clip"]["lr"],
                               "base_lr": cfg["clip"]["lr"]})
            self.opt_E = torch.optim.Adam(groups, betas=(0.5, 0.999))

    def _optim_state(self) -> dict:
        return {"G": self.opt_G.state_dict(), "Ds": [o.state_dict() for o in self.opt_Ds],
                "E": None if self.opt_E is None else self.opt_E.state_dict(), "scaler": self.scaler.state_dict(),
                "clip_d": None if self.opt_clip_d is None else self.opt_clip_d.state_dict()}

    def _load_training_state(self, ck: dict) -> None:
        o = ck["optim"]
        self.opt_G.load_state_dict(o["G"])
        for opt, st in zip(self.opt_Ds, o["Ds"]):
            opt.load_state_dict(st)
        if self.opt_E is not None and o["E"] is not None:
            self.opt_E.load_state_dict(o["E"])
        if self.opt_clip_d is not None and o.get("clip_d") is not None:
            self.opt_clip_d.load_state_dict(o["clip_d"])
        self.scaler.load_state_dict(o["scaler"])
        self.step = ck["step"]
        self.train_seconds = float(ck.get("train_seconds", 0.0))
        self._resume_rng = ck["rng"]

    # ------------------------------------------------------------------ files

    def prepare_run_dir(self) -> None:
        if not self.par.is_main:
            return
        d = self.run_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "grids").mkdir(exist_ok=True)
        atomic_write_text(d / "config.yaml", C.to_yaml(self.cfg))
        split = {"dataset": self.cfg["data"]["dataset"], "root": self.cfg["data"]["root"],
                 "train": [r.key for r in self.train_recs], "test": [r.key for r in self.test_recs]}
        atomic_write_text(d / "split.json", json.dumps(split, indent=1))
        reals = [r.path for r in sorted(self.test_recs, key=lambda r: r.key) if r.path is not None]
        atomic_write_text(d / "test_real.txt", "".join(f"{p}\n" for p in reals))
        link_dir = d / "real_test"
        link_dir.mkdir(exist_ok=True)
        for p in reals:
            link = link_dir / p.name
            if link.is_symlink() or link.exists():
                if link.is_symlink() and Path(os.readlink(link)) == p:
                    continue
                link.unlink()
            link.symlink_to(p)
        atomic_write_text(d / "grids" / "captions.txt", "".join(f"{i}\t{t}\n" for i, t in enumerate(self.grid_texts)))

    def _count_long(self) -> dict:
        """Training captions over the text encoder's limit (AttnGAN keeps an ordered random subset)."""
        coder = self.system.text_coder
        caps = [c.text for r in self.train_recs for c in r.captions]
        return {"over_limit": sum(coder.n_tokens(t) > coder.max_tokens for t in caps), "of": len(caps),
                "limit": coder.max_tokens}

    def log(self, obj: dict) -> None:
        if not self.par.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(obj) + "\n")

    def truncate_log(self, step: int) -> None:
        """Drop log lines written after ``step`` (a run that died after its last checkpoint)."""
        p = self.run_dir / "log.jsonl"
        if not self.par.is_main or not p.exists():
            return
        keep = []
        for line in p.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except ValueError:
                continue
        atomic_write_text(p, "".join(x + "\n" for x in keep))

    def save_checkpoint(self) -> Path:
        """Rank 0 writes ``last.pt`` (every rank holds the same state)."""
        path = self.run_dir / "last.pt"
        if not self.par.is_main:
            return path
        s = self.system
        ck = {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg,
            "variant": C.variant(self.cfg),
            "step": self.step,
            "gan_step": max(0, self.step - self.damsm_steps),
            "damsm_steps": self.damsm_steps,
            "coders": s.coder_states(),
            "clip": s.clip_info,
            "state": s.state(),
            "optim": self._optim_state(),
            "rng": _rng_state(self.device),
            "split": {"train": [r.key for r in self.train_recs], "test": [r.key for r in self.test_recs]},
            "test_records": [record_to_dict(r, self.cfg["data"]["root"]) for r in self.test_recs],
            "torch_version": str(torch.__version__),  # TorchVersion pickles as its class
            "world_size": self.par.world,
            "train_seconds": self._elapsed(),
            "data_stats": self.data_stats,
        }
        save_torch(ck, path)
        return path

    def _elapsed(self) -> float:
        """Training wall time over every invocation of this run so far (seconds)."""
        extra = 0.0 if self._t_run_start is None else time.time() - self._t_run_start
        return round(self.train_seconds + extra, 3)

    # ------------------------------------------------------------------ steps

    def _set_damsm_lr(self, step: int) -> float:
        bs = self.cfg["damsm"]["batch_size"]
        epoch = step // max(1, len(self.dataset) // bs)
        d = self.cfg["damsm"]
        lr = None
        for g in self.opt_E.param_groups:
            g["lr"] = max(g["base_lr"] * d["lr_decay"] ** epoch, g["base_lr"] / 10.0)
            lr = lr if lr is not None else g["lr"]
        return lr

    def damsm_step(self, batch, step: int) -> dict[str, float]:
        s, cfg = self.system, self.cfg
        imgs, ids, index = batch
        lr = self._set_damsm_lr(step)
        s.image_encoder.train()
        train_text = s.text_key == "lstm" or not cfg["clip"]["freeze"]
        s.text_encoder.train(train_text)
        self.opt_E.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(train_text):
            words, sent, mask = s.encode_text(ids, cached=not train_text)
        regions, code = s.image_encoder(imgs[-1].to(self.device))
        # the matching loss is over the global batch (every rank computes it; see models.parallel)
        P = self.par
        cls = self.identity_ids[P.gather(index.to(self.device))]
        loss, parts = damsm_loss(P.gather(regions), P.gather(code), P.gather(words), P.gather(sent), P.gather(mask),
                                 cls, cfg["damsm"])
        self._check_finite(loss, "DAMSM loss", step)
        loss.backward()
        P.all_reduce_grads(p for g in self.opt_E.param_groups for p in g["params"])
        if s.text_key == "lstm":
            torch.nn.utils.clip_grad_norm_(s.text_encoder.parameters(), cfg["damsm"]["grad_clip"])
        self.opt_E.step()
        return {"damsm": loss.item(), **parts, "lr": lr}

    def _enter_gan_phase(self) -> None:
        s = self.system
        s.text_encoder.eval()
        for p in s.text_encoder.parameters():
            p.requires_grad_(False)
        if s.image_encoder is not None:
            s.image_encoder.eval()
            for p in s.image_encoder.parameters():
                p.requires_grad_(False)
        if s.clip_model is not None:
            s.clip_model.eval()
        s.G.train()
        s.Ds.train()

    def _check_finite(self, loss: torch.Tensor, what: str, step: int) -> None:
        """Raise on every rank when the loss is not finite on some rank."""
        if self.par.any(not bool(torch.isfinite(loss.detach()).all())):
            raise NonFiniteLoss(f"{what} is not finite at step {step}; lower the learning rates or disable AMP "
                                "(--set train.amp=off); the last checkpoint is intact")

    def clip_d_active(self, step: int) -> bool:
        """Whether the CLIP discriminator judges the conditional part at global ``step`` (its GAN step
        ``step - damsm_steps`` reached ``clip_d.start_step``): a function of the step alone, so a resume
        on either side of the switch continues exactly."""
        return self.system.clip_d is not None and step - self.damsm_steps >= self.cfg["clip_d"]["start_step"]

    def gan_step(self, batch, step: int) -> dict[str, float]:
        s, cfg = self.system, self.cfg
        P = self.par
        imgs, ids, index = batch
        imgs = [x.to(self.device, non_blocking=True) for x in imgs]
        B = imgs[0].size(0) * P.world  # the global batch; this rank holds rows P.rows(B)
        rows = P.rows(B)
        cls = self.identity_ids[P.gather(index.to(self.device))]
        clip_d = self.clip_d_active(step)
        with torch.no_grad():
            words, sent, mask = s.encode_text(ids, cached=True)
            words, sent = words.float(), sent.float()
            clip_txt = None
            if cfg["loss"]["matching"] == "clip" or clip_d:
                clip_txt = sent if s.text_key == "clip" else s.clip_sentence(ids, cached=True).float()
            sent_all = P.gather(sent)
        # noise for the global batch on every rank (same RNG stream as one process), this rank's rows
        z = torch.randn(B, cfg["model"]["z_dim"], device=self.device)[rows]
        eps = torch.randn(B, cfg["model"]["condition_dim"], device=self.device)[rows]
        with self._autocast():
            fakes, _, mu, logvar = s.G(z, sent, words, mask, eps)
        # mismatched pairs: real image j with caption j + 1 of the global batch
        wrong = slice(rows.start + 1, rows.stop + 1)
        wrong_weight = P.world / (B - 1)
        err_d, parts = self._d_steps(imgs, fakes, sent, sent_all[wrong], wrong_weight, step, clip_d)
        if clip_d:
            parts["d_clip"] = self._clip_d_step(imgs[-1], fakes[-1], clip_txt, P.gather(clip_txt)[wrong],
                                                wrong_weight, step)
        # ---- G
        frozen = list(s.Ds.parameters()) + ([] if s.clip_d is None else list(s.clip_d.parameters()))
        for p in frozen:
            p.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        lam = cfg["loss"]["lambda"]
        with self._autocast():
            clip_fake = None
            if clip_d or cfg["loss"]["matching"] == "clip":
                from models.text import clip_image_features

                clip_fake = clip_image_features(s.clip_model, fakes[-1])
            if clip_d:  # unconditional branches of every stage + the CLIP head's conditional judgement
                adv = sum(g_adv_uncond(D, fake) for D, fake in zip(s.Ds, fakes)) + g_clip_cond(s.clip_d, clip_fake,
                                                                                               clip_txt)
            else:
                adv = sum(g_adv_loss(D, fake, sent) for D, fake in zip(s.Ds, fakes))
            match = self._match_loss(fakes[-1], clip_fake, clip_txt, words, sent_all, mask, cls, parts)
            kl = kl_loss(mu, logvar)
            total = adv + lam * match + cfg["loss"]["kl_weight"] * kl
        self._check_finite(total, "G loss", step)
        self.scaler.scale(total).backward()
        P.all_reduce_grads(s.G.parameters())
        self.scaler.step(self.opt_G)
        self.scaler.update()
        for p in frozen:
            p.requires_grad_(True)
        self._ema_update()
        return {"d_loss": err_d, "g_adv": float(adv.item()), "match": lam * float(match.item()),
                "kl": float(kl.item()), "g_total": float(total.item()), **parts}

    def _d_steps(self, imgs, fakes, sent, wrong_sent, wrong_weight: float, step: int,
                 clip_d: bool) -> tuple[float, dict[str, float]]:
        """One update of every stage's D: AttnGAN's loss, or only its unconditional part once the CLIP
        discriminator has switched on (its conditional judgement is :meth:`_clip_d_step`'s)."""
        err_d = 0.0
        for D, opt, real, fake in zip(self.system.Ds, self.opt_Ds, imgs, fakes):
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                ld = d_loss_uncond(D, real, fake) if clip_d else d_loss(D, real, fake, sent, wrong_sent, wrong_weight)
            self._check_finite(ld, "D loss", step)
            self.scaler.scale(ld).backward()
            self.par.all_reduce_grads(D.parameters())
            self.scaler.step(opt)
            err_d += ld.item()
        return err_d, {}

    def _clip_d_step(self, real, fake, clip_txt, wrong_txt, wrong_weight: float, step: int) -> float:
        """One update of the CLIP discriminator's head on the last stage's real and generated images."""
        from models.text import clip_image_features

        s = self.system
        self.opt_clip_d.zero_grad(set_to_none=True)
        with torch.no_grad(), self._autocast():  # frozen towers: no graph through them for D's update
            img_real = clip_image_features(s.clip_model, real)
            img_fake = clip_image_features(s.clip_model, fake.detach())
        with self._autocast():
            lh = clip_d_loss(s.clip_d, img_real, img_fake, clip_txt, wrong_txt, wrong_weight)
        self._check_finite(lh, "CLIP discriminator loss", step)
        self.scaler.scale(lh).backward()
        self.par.all_reduce_grads(s.clip_d.parameters())
        self.scaler.step(self.opt_clip_d)
        return float(lh.item())

    def _match_loss(self, fake, clip_fake, clip_txt, words, sent_all, mask, cls, parts: dict) -> torch.Tensor:
        """λ's term: DAMSM on the last stage's image, or the CLIP matching loss (its parts into ``parts``)."""
        s, cfg, P = self.system, self.cfg, self.par
        lam = cfg["loss"]["lambda"]
        if cfg["loss"]["matching"] == "damsm":
            regions, code = s.image_encoder(fake)
            match, mp = damsm_loss(P.gather(regions), P.gather(code), P.gather(words), sent_all, P.gather(mask),
                                   cls, cfg["damsm"])
            parts.update({k: lam * v for k, v in mp.items()})
            return match
        match = clip_match_loss(P.gather(clip_fake), P.gather(clip_txt), cls, cfg["loss"]["clip_gamma"])
        parts["clip_loss"] = lam * match.item()
        return match

    @torch.no_grad()
    def _ema_update(self) -> None:
        d = self.cfg["train"]["ema_decay"]
        G, E = self.system.G, self.system.G_ema
        ema_p = list(E.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in G.parameters()], 1.0 - d)
        for b_e, b in zip(E.buffers(), G.buffers()):
            b_e.copy_(b)

    # ------------------------------------------------------------------ periodic

    def write_grid(self, gan_step: int) -> Path | None:
        from models.evaluate import sample, save_grid

        if not self.grid_texts or not self.par.is_main:
            return None
        devs = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devs):
            imgs, _ = sample(self.system, self.grid_texts, seed=self.cfg["seed"] + 1, batch_size=32)
        path = self.run_dir / "grids" / f"step_{gan_step:07d}.png"
        save_grid(imgs, path)
        return path

    def run_eval(self, gan_step: int) -> dict | None:
        """Held-out evaluation by rank 0 alone (its own RNG fork, no process group); the other ranks wait."""
        from facemetrics.pipeline.distributed import local_only
        from models.evaluate import evaluate

        res = None
        if self.par.is_main:
            t0 = time.time()
            devs = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devs), local_only():
                t = self.cfg["train"]
                res = evaluate(self.system, self.test_recs, self.run_dir / "real_test", seed=self.cfg["seed"] + 2,
                               limit=t["eval_images"], fid=t["eval_fid"], rprec_negatives=t["eval_rprec_negatives"],
                               rprec_folds=t["eval_rprec_folds"])
            res["seconds"] = round(time.time() - t0, 2)
            self.log({"step": self.step, "gan_step": gan_step, "metrics": res})
        self.par.barrier("evaluation on rank 0")
        return res

    # ------------------------------------------------------------------ loop

    def run(self, stop_at: int | None = None, max_minutes: float | None = None) -> dict[str, Any]:
        """Train until ``train.steps`` GAN steps (or ``stop_at`` global step, or the time limit)."""
        from tqdm import tqdm

        cfg = self.cfg
        t = cfg["train"]
        self.prepare_run_dir()
        self.par.barrier("preparing the run folder")
        resumed = hasattr(self, "_resume_rng")
        if resumed:
            self.truncate_log(self.step)
            _set_rng_state(self._resume_rng, self.device)
            self.log({"step": self.step, "event": "resume"})
        else:
            self.log({"step": 0, "event": "start", "variant": C.variant(cfg), "device": str(self.device),
                      "n_train": len(self.train_recs), "n_test": len(self.test_recs),
                      "damsm_steps": self.damsm_steps, "gan_steps": t["steps"], "world_size": self.par.world,
                      "amp": str(self.amp_dtype), "clip": self.system.clip_info,
                      "long_train_captions": self._count_long(), "data": self.data_stats})
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        limit = max_minutes if max_minutes is not None else t["max_minutes"]
        budget = t["budget_minutes"]  # over every invocation: the time of earlier ones is in the checkpoint
        t_start = self._t_run_start = time.time()

        def out_of_time() -> bool:  # rank 0's clock decides, so every rank stops after the same step
            if not (limit or budget):
                return False
            now = time.time() - t_start
            over = bool(limit) and now > 60 * limit or bool(budget) and self.train_seconds + now > 60 * budget
            return self.par.any(self.par.is_main and over)

        status = "done" if end == self.total_steps else "stopped"
        if self.step < end and out_of_time():  # a run resumed with its budget already spent
            status, end = "time limit", self.step
        bar = tqdm(total=end, initial=self.step, disable=not self.progress, file=sys.stderr, unit="step",
                   dynamic_ncols=True)
        acc: dict[str, float] = {}
        n_acc, t_log = 0, time.time()
        nw = cfg["data"]["num_workers"]
        try:
            # ---- DAMSM stage
            if self.step < min(end, self.damsm_steps):
                loader = make_loader(self.dataset, cfg["damsm"]["batch_size"], cfg["seed"], PHASE_DAMSM,
                                     self.step, min(end, self.damsm_steps), nw, self.par.rank, self.par.world)
                for batch in loader:
                    parts = self.damsm_step(batch, self.step)
                    self.step += 1
                    acc, n_acc, t_log = self._after_step("damsm", parts, acc, n_acc, t_log, bar)
                    if out_of_time():
                        status = "time limit"
                        break
            if status != "time limit" and self.step >= self.damsm_steps and self.step < end:
                self._enter_gan_phase()
                g0 = self.step - self.damsm_steps
                if g0 == 0:
                    self._periodic(0)
                loader = make_loader(self.dataset, t["batch_size"], cfg["seed"], PHASE_GAN, g0,
                                     end - self.damsm_steps, nw, self.par.rank, self.par.world)
                for batch in loader:
                    parts = self.gan_step(batch, self.step)
                    self.step += 1
                    acc, n_acc, t_log = self._after_step("gan", parts, acc, n_acc, t_log, bar)
                    self._periodic(self.step - self.damsm_steps)
                    if out_of_time():
                        status = "time limit"
                        break
            elif self.step >= self.damsm_steps:
                self._enter_gan_phase()
        finally:
            bar.close()
        if n_acc:
            self._flush_log(acc, n_acc, t_log, "gan" if self.step > self.damsm_steps else "damsm")
        gan_step = max(0, self.step - self.damsm_steps)
        if self.step == self.total_steps and t["eval_every"] and gan_step % t["eval_every"]:
            self.run_eval(gan_step)
        if self.step >= self.damsm_steps and t["sample_every"] and gan_step % t["sample_every"]:
            self.write_grid(gan_step)
        path = self.save_checkpoint()
        self.log({"step": self.step, "event": status, "seconds": round(time.time() - t_start, 2),
                  "train_seconds": self._elapsed()})
        self.par.barrier("writing the checkpoint")  # no rank returns before it is on disk
        return {"status": status, "step": self.step, "gan_step": gan_step, "checkpoint": str(path),
                "world_size": self.par.world, "train_seconds": self._elapsed()}

    def _after_step(self, phase, parts, acc, n_acc, t_log, bar):
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + float(v)
        n_acc += 1
        bar.update(1)
        if self.progress and phase == "gan":
            bar.set_postfix(d=f"{parts['d_loss']:.2f}", g=f"{parts['g_total']:.2f}", refresh=False)
        elif self.progress:
            bar.set_postfix(damsm=f"{parts['damsm']:.2f}", refresh=False)
        every = self.cfg["train"]["log_every"]
        if every and self.step % every == 0:
            self._flush_log(acc, n_acc, t_log, phase)
            acc, n_acc, t_log = {}, 0, time.time()
        ce = self.cfg["train"]["checkpoint_every"]
        if ce and self.step % ce == 0 and self.step < self.total_steps:
            self.save_checkpoint()
        return acc, n_acc, t_log

    def _flush_log(self, acc, n_acc, t_log, phase) -> None:
        dt = max(time.time() - t_log, 1e-9)
        keys = sorted(acc)
        acc = dict(zip(keys, self.par.mean([acc[k] for k in keys])))  # the global batch's losses
        losses = {k: v / n_acc for k, v in acc.items() if k != "lr"}
        rec = {"step": self.step, "phase": phase, "losses": losses, "steps": n_acc,
               "steps_per_s": round(n_acc / dt, 4), "time": round(time.time(), 3)}
        if "lr" in acc:
            rec["lr"] = acc["lr"] / n_acc
        self.log(rec)

    def _periodic(self, gan_step: int) -> None:
        t = self.cfg["train"]
        if t["sample_every"] and gan_step % t["sample_every"] == 0:
            self.write_grid(gan_step)
        if t["eval_every"] and gan_step % t["eval_every"] == 0:
            self.run_eval(gan_step)


@contextlib.contextmanager
def parallel_session(device: str):
    """The torchrun process group (gloo on the CPU, NCCL on CUDA) as a :class:`Parallel`;
    one process without torchrun's variables."""
    from facemetrics.pipeline.distributed import session

    kind = resolve_device(device).type
    with session("cuda" if kind == "cuda" else kind) as ctx:
        yield Parallel.of(ctx)


def train(cfg: dict, run_dir: str | Path, *, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Start a new run in ``run_dir`` (refuses a folder that already holds a checkpoint).
    Under torchrun every rank calls this with the same arguments (see :mod:`models.parallel`)."""
    run_dir = Path(run_dir)
    if (run_dir / "last.pt").exists():
        raise FacemetricsError(f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
                               "or choose another --out", "--out")
    with parallel_session(cfg["device"]) as par:
        return Trainer(cfg, run_dir, None, progress, par).run(stop_at=stop_at)


def resume(run_dir: str | Path, overrides: dict | None = None, *, config_file_cfg: dict | None = None,
           progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from ``last.pt``. ``overrides`` (a nested dict) may change
    only :data:`models.config.RESUME_MUTABLE` keys; ``config_file_cfg`` (a config the user also
    passed) must describe the same variant and training."""
    run_dir = Path(run_dir)
    ck = load_checkpoint(str(run_dir), param="--resume")
    cfg = C.upgrade(ck["config"])  # keys added since the run was saved take their defaults
    if config_file_cfg is not None:
        if C.variant(config_file_cfg) != C.variant(cfg):
            raise FacemetricsError(
                f"--config describes variant {C.variant(config_file_cfg)} but the run in {run_dir} is "
                f"{C.variant(cfg)}; a checkpoint cannot change variant", "--config")
        bad = [k for k in C.diff(cfg, config_file_cfg) if k not in C.RESUME_MUTABLE]
        if bad:
            raise FacemetricsError(f"--config differs from the run being resumed in {', '.join(bad)}; "
                                   "these cannot change on resume", "--config")
        cfg = config_file_cfg
    if overrides:
        new = C.merge(cfg, overrides, "overrides", "--set")
        bad = [k for k in C.diff(cfg, new) if k not in C.RESUME_MUTABLE]
        if bad:
            raise FacemetricsError(f"cannot change {', '.join(bad)} when resuming (only "
                                   f"{', '.join(sorted(C.RESUME_MUTABLE))})", "--set")
        cfg = new
    C.validate(cfg)
    ck["config"] = cfg
    if ck["step"] >= cfg["damsm"]["steps"] * C.needs_damsm(cfg) + cfg["train"]["steps"]:
        print(f"note: {run_dir} already finished {ck['step']} steps; raise train.steps to continue", file=sys.stderr)
    with parallel_session(cfg["device"]) as par:
        return Trainer(cfg, run_dir, ck, progress, par).run(stop_at=stop_at)
