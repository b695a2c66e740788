"""Fine-tune the FID Inception-v3 on faces (``facemetrics finetune-inception``).

Pipeline: label source (:mod:`facemetrics.finetune.labels`) → optional seeded
subsampling → seeded split → FID trunk with pretrained weights
(:mod:`facemetrics.nets.inception`) plus a new head → Adam → per-epoch validation →
checkpoint (:mod:`facemetrics.nets.face_inception`) and a training-state file every
epoch → a PNG of the curves.

Conventions
-----------
* Input: the core preset's resizer at ``image_size`` (default ``clean`` at 299),
  then the preset's normalisation (``(x - 128) / 128`` for clean and tf1); training adds a seeded horizontal flip (p = 0.5).
* Batch-norm statistics are frozen: the trunk's ``mean``/``var`` are buffers, only
  conv weights and the ``beta`` shifts learn (the pretrained network's own graph).
  ``freeze_until=BLOCK`` also stops gradients for every block up to BLOCK.
* Loss: cross-entropy (single-label) or binary cross-entropy averaged over the
  known targets (multi-label). Optimiser: Adam, ``lr`` for the head and
  ``lr * backbone_lr_scale`` for the trainable trunk; constant rate.
* Split: single-label — per class, a seeded shuffle, ``max(1, round(val_split·n))``
  validation images (each class needs ≥ 1 training image); multi-label — a seeded
  shuffle of all images, ``max(1, round(val_split·N))`` for validation.
* Accuracy (training: over the epoch's batches as they were trained, dropout on;
  validation: after the epoch): single-label — top-1; multi-label — per group (binary:
  sigmoid > 0.5; categorical: arg-max within the group) over images whose group is
  known, then the mean over groups. *Chance* is the accuracy of always answering
  the training set's most frequent class (per group for multi-label).
* Randomness: ``seed`` seeds the head initialisation, dropout (torch's global RNG),
  numpy and python RNGs, the split and a separate data-order generator that draws
  each epoch's permutation and flips. The training-state file
  (``OUT + ".train-state"``) stores the model, the optimiser, all four RNG states
  and each epoch's data order, so ``resume=True`` continues bit for bit on the
  same device and thread count (tested on CPU).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.nets.face_inception import (
    FORMAT,
    TRAIN_STATE_FORMAT,
    Preprocess,
    build_model,
    get_resizer,
    normalisation,
    sha256_file,
)
from facemetrics.finetune.labels import LabelSet, load_labels
from facemetrics.storage.torchfile import load_torch_dict, save_torch
from facemetrics.storage.digest import file_sha256

#: Config fields that may change between a run and its ``--resume``.
RESUMABLE_CHANGES = frozenset({"epochs", "out", "plot", "progress", "resume", "device", "cache_mb"})


@dataclass
class FinetuneConfig:
    """All options of a fine-tuning run (the CLI flags one to one)."""

    data: str
    out: str
    labels: str = "folders"
    epochs: int = 5
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    batch_size: int = 32
    image_size: int = 299
    preset: str = "clean"
    val_split: float = 0.1
    min_per_class: int = 5
    max_classes: int | None = None
    max_per_class: int | None = None
    freeze_until: str = "none"
    dropout: float = 0.2
    hflip: bool = True
    seed: int = 0
    base_weights: str | None = None
    device: str = "cpu"
    plot: str | None = None
    progress: bool = True
    resume: bool = False
    cache_mb: int = 2048

    def state_path(self) -> Path:
        return Path(str(self.out) + ".train-state")

    def plot_path(self) -> Path:
        if self.plot:
            return Path(self.plot)
        out = Path(self.out)
        return out.with_name(out.stem + ".curves.png")


# --------------------------------------------------------------------------- data

def validate_config(cfg: FinetuneConfig) -> None:
    from facemetrics.nets.inception import BLOCKS, MIN_SIZE

    if cfg.epochs < 1:
        raise FacemetricsError("--epochs must be at least 1", "--epochs")
    if cfg.batch_size < 1:
        raise FacemetricsError("--batch-size must be at least 1", "--batch-size")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise FacemetricsError("--lr must be a positive number", "--lr")
    if cfg.image_size < MIN_SIZE:
        raise FacemetricsError(f"--image-size must be at least {MIN_SIZE} for Inception-v3", "--image-size")
    if not 0 < cfg.val_split < 1:
        raise FacemetricsError("--val-split must be between 0 and 1 (exclusive)", "--val-split")
    if cfg.freeze_until not in ("none",) + BLOCKS[:-1]:
        raise FacemetricsError(
            f"--freeze-until must be none or one of {', '.join(BLOCKS[:-1])}", "--freeze-until"
        )
    if not 0 <= cfg.dropout < 1:
        raise FacemetricsError("--dropout must be in [0, 1)", "--dropout")
    for name in ("max_classes", "max_per_class"):
        v = getattr(cfg, name)
        if v is not None and v < 2:
            raise FacemetricsError(f"--{name.replace('_', '-')} must be at least 2", f"--{name.replace('_', '-')}")


def subsample(labels: LabelSet, max_classes: int | None, max_per_class: int | None, seed: int) -> LabelSet:
    """Keep the ``max_classes`` largest classes (ties by name) and a seeded ``max_per_class`` of each.

    Single-label sets only.
    """
    if max_classes is None and max_per_class is None:
        return labels
    if labels.kind != "single":
        raise FacemetricsError("--max-classes/--max-per-class apply to single-label sources only",
                               "--max-classes")
    by_class: dict[int, list[str]] = {}
    for n, t in zip(labels.names, labels.targets):
        by_class.setdefault(t, []).append(n)
    keep = sorted(by_class, key=lambda k: (-len(by_class[k]), labels.classes[k]))
    if max_classes is not None:
        keep = keep[:max_classes]
    keep = sorted(keep, key=lambda k: labels.classes[k])
    rng = np.random.default_rng(seed)
    classes, names, targets = [], [], []
    for new, k in enumerate(keep):
        items = sorted(by_class[k])
        if max_per_class is not None and len(items) > max_per_class:
            idx = sorted(rng.choice(len(items), size=max_per_class, replace=False).tolist())
            items = [items[i] for i in idx]
        classes.append(labels.classes[k])
        names.extend(items)
        targets.extend([new] * len(items))
    notes = labels.notes + [f"subsampled to {len(classes)} classes, {len(names)} images (seed {seed})"]
    return LabelSet("single", classes, names, targets, notes=notes, spec=labels.spec)


def split(labels: LabelSet, val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/validation split (indices into ``labels``); see the module docstring."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    if labels.kind == "single":
        by_class: dict[int, list[int]] = {}
        for i, t in enumerate(labels.targets):
            by_class.setdefault(t, []).append(i)
        for k in sorted(by_class):
            idx = by_class[k]
            if len(idx) < 2:
                raise FacemetricsError(
                    f"class {labels.classes[k]!r} has {len(idx)} image; each class needs at least 2 "
                    "(one for training, one for validation)", "--min-per-class",
                )
            perm = [idx[j] for j in rng.permutation(len(idx))]
            n_val = min(len(idx) - 1, max(1, round(val_split * len(idx))))
            val.extend(perm[:n_val])
            train.extend(perm[n_val:])
    else:
        n = len(labels)
        if n < 2:
            raise FacemetricsError("need at least 2 labelled images", "--data")
        perm = rng.permutation(n).tolist()
        n_val = min(n - 1, max(1, round(val_split * n)))
        val, train = perm[:n_val], perm[n_val:]
    return sorted(train), sorted(val)


def data_content_sha256(root: Path, labels: LabelSet) -> str:
    """sha256 over the label source kind, classes and each image's (name, file sha256, target)."""
    h = hashlib.sha256()
    h.update(json.dumps(labels.head(), sort_keys=True).encode())
    order = sorted(range(len(labels)), key=lambda i: labels.names[i])
    for i in order:
        n = labels.names[i]
        p = Path(n) if Path(n).is_absolute() else root / n
        h.update(b"\0" + n.encode() + b"\0" + file_sha256(p).encode())
        tgt = labels.targets[i] if labels.kind == "single" else [labels.targets[i], labels.masks[i]]
        h.update(json.dumps(tgt).encode())
    return h.hexdigest()


class ImageStore:
    """Decoded, resized images as float32 tensors (3, S, S) in [0, 255], cached in memory."""

    def __init__(self, root: Path, names: list[str], preset: str, size: int, cache_bytes: int) -> None:
        self.root, self.names = root, names
        self.pre = Preprocess(preset, size)
        per_image = 3 * size * size * 4
        self.cache_enabled = per_image * len(names) <= cache_bytes
        self._cache: dict[int, object] = {}

    def get(self, i: int):
        import torch

        from facemetrics.imaging.images import DECODE_ERRORS, decode_rgb

        t = self._cache.get(i)
        if t is None:
            n = self.names[i]
            p = Path(n) if Path(n).is_absolute() else self.root / n
            try:
                img = decode_rgb(p.read_bytes())
            except DECODE_ERRORS as e:
                raise FacemetricsError(f"cannot decode training image {p}: {e}", "--data") from None
            t = torch.from_numpy(self.pre.resize(img)).permute(2, 0, 1).contiguous()
            if self.cache_enabled:
                self._cache[i] = t
        return t


# --------------------------------------------------------------------------- metrics

def _group_slices(head: dict) -> list[tuple[str, str, slice]]:
    out, col = [], 0
    for g in head["groups"]:
        w = len(g["outputs"])
        out.append((g["name"], g["kind"], slice(col, col + w)))
        col += w
    return out


def accuracy_report(head: dict, logits, targets, masks, train_targets, train_masks) -> dict:
    """Validation accuracy, its chance level, and per-group numbers (see module docstring)."""
    import torch

    if head["kind"] == "single":
        pred = logits.argmax(1)
        acc = (pred == targets).double().mean().item()
        counts = torch.bincount(train_targets, minlength=logits.shape[1])
        majority = int(counts.argmax())
        chance = (targets == majority).double().mean().item()
        return {"accuracy": acc, "chance": chance, "uniform_chance": 1.0 / logits.shape[1],
                "n": int(targets.numel()), "per_group": {}}
    per_group, accs, chances = {}, [], []
    for name, kind, sl in _group_slices(head):
        known = masks[:, sl.start] > 0
        tknown = train_masks[:, sl.start] > 0
        if known.sum() == 0:
            continue
        lg, tg = logits[known][:, sl], targets[known][:, sl]
        ttg = train_targets[tknown][:, sl]
        if kind == "binary":
            pred = (lg[:, 0] > 0).double()
            truth = tg[:, 0].double()
            acc = (pred == truth).double().mean().item()
            maj = float(ttg[:, 0].double().mean().item() >= 0.5) if len(ttg) else 0.0
            ch = (truth == maj).double().mean().item()
        else:
            truth = tg.argmax(1)
            acc = (lg.argmax(1) == truth).double().mean().item()
            maj = int(ttg.sum(0).argmax()) if len(ttg) else 0
            ch = (truth == maj).double().mean().item()
        per_group[name] = {"accuracy": acc, "chance": ch, "n": int(known.sum())}
        accs.append(acc)
        chances.append(ch)
    if not accs:
        raise FacemetricsError("the validation split has no known label in any group; raise --val-split",
                               "--val-split")
    return {"accuracy": float(np.mean(accs)), "chance": float(np.mean(chances)),
            "n": int(logits.shape[0]), "per_group": per_group}


def _loss(head_kind: str, logits, targets, masks):
    import torch.nn.functional as F

    if head_kind == "single":
        return F.cross_entropy(logits, targets)
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * masks
    return per.sum() / masks.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- RNG state

def _rng_state(data_gen) -> dict:
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    st = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "data_order": data_gen.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, data_gen) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    data_gen.set_state(st["data_order"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --------------------------------------------------------------------------- plot

def write_plot(history: list[dict], chance: float | None, path: Path, title: str) -> None:
    """Loss and accuracy curves (train and validation per epoch) as a PNG, written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from facemetrics.storage.atomic import atomic_write_bytes

    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax1.set_xlabel("epoch"); ax1.set_ylabel("loss"); ax1.legend(); ax1.grid(alpha=0.3)
    ax2.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    ax2.plot(ep, [h["val_acc"] for h in history], "s-", label="validation")
    if chance is not None:
        ax2.axhline(chance, ls="--", c="gray", label=f"chance {chance:.3f}")
    ax2.set_xlabel("epoch"); ax2.set_ylabel("accuracy"); ax2.set_ylim(0, 1.02)
    ax2.legend(); ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- training

@dataclass
class FinetuneResult:
    checkpoint: Path
    state: Path
    plot: Path
    history: list[dict]
    validation: dict
    classes: list[str]
    n_train: int
    n_val: int
    notes: list[str] = field(default_factory=list)


def _config_diff(saved: dict, cfg: FinetuneConfig) -> list[str]:
    now = asdict(cfg)
    return sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])


@dataclass
class _Run:
    """What the steps of one :func:`finetune` run share: data, model, optimiser, RNG, history."""

    cfg: FinetuneConfig
    say: Callable[[str], None]
    root: Path
    labels: LabelSet
    train_idx: list[int]
    val_idx: list[int]
    data_sha: str
    shift: float
    scale: float
    device: Any = None
    data_gen: Any = None
    base_path: Path | None = None
    base_sha: str = ""
    model: Any = None
    opt: Any = None
    frozen: Any = None
    store: ImageStore | None = None
    all_t: Any = None
    all_m: Any = None
    history: list[dict] = field(default_factory=list)
    orders: list[list[int]] = field(default_factory=list)
    start: int = 1
    report: dict = field(default_factory=dict)


def finetune(cfg: FinetuneConfig, log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Run (or resume) a fine-tuning; writes the checkpoint, training state and plot every epoch."""
    import torch

    run = _prepare_data(cfg, log or (lambda m: print(m, file=sys.stderr)))
    run.device = torch.device(cfg.device)
    state_path = cfg.state_path()
    out_path = Path(cfg.out)
    run.data_gen = torch.Generator().manual_seed(cfg.seed)
    _build(run)
    if cfg.resume:
        _resume(run, state_path)
    elif out_path.exists() or state_path.exists():
        run.say(f"overwriting {out_path} (no --resume)")
    _prepare_images(run)
    for epoch in range(run.start, cfg.epochs + 1):
        _train_epoch(run, epoch)
        _save_epoch(run, epoch, state_path, out_path)
    return FinetuneResult(out_path, state_path, cfg.plot_path(), run.history, run.report, list(run.labels.classes),
                          len(run.train_idx), len(run.val_idx), list(run.labels.notes))


def _prepare_data(cfg: FinetuneConfig, say: Callable[[str], None]) -> _Run:
    """Check the config, read the labels, split them; the run's first state."""
    validate_config(cfg)
    root = Path(cfg.data)
    shift, scale = normalisation(cfg.preset)  # fails early on an unknown preset
    labels = load_labels(root, cfg.labels, cfg.min_per_class)
    labels = subsample(labels, cfg.max_classes, cfg.max_per_class, cfg.seed)
    if len(labels.classes) < 2 and labels.kind == "single":
        raise FacemetricsError(
            f"only one class ({labels.classes[0]!r}) has at least {cfg.min_per_class} images; "
            "need two or more", "--min-per-class")
    train_idx, val_idx = split(labels, cfg.val_split, cfg.seed)
    data_sha = data_content_sha256(root, labels)
    for note in labels.notes:
        say(note)
    say(f"{len(labels.classes)} outputs ({labels.kind}-label), {len(train_idx)} training / "
        f"{len(val_idx)} validation images, data sha256 {data_sha[:12]}")
    return _Run(cfg, say, root, labels, train_idx, val_idx, data_sha, shift, scale)


def _build(run: _Run) -> None:
    """The model from the base weights (seeded), its frozen blocks and the optimiser."""
    import torch

    from facemetrics.nets.inception import default_fid_weights, load_fid_state, scripted_layers_state

    cfg = run.cfg
    run.base_path = default_fid_weights(cfg.base_weights)
    run.base_sha = sha256_file(run.base_path)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = build_model(len(run.labels.classes), cfg.dropout)
    try:
        load_fid_state(model.backbone, scripted_layers_state(run.base_path))
    except (RuntimeError, ValueError, AttributeError) as e:
        raise FacemetricsError(f"--base-weights {run.base_path} is not the FID Inception: {e}",
                               "--base-weights") from None
    run.frozen = model.backbone.freeze_until(cfg.freeze_until)
    model.to(run.device)
    trunk = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
    if trunk:
        groups.append({"params": trunk, "lr": cfg.lr * cfg.backbone_lr_scale})
    run.model, run.opt = model, torch.optim.Adam(groups)


def _resume(run: _Run, state_path: Path) -> None:
    """Continue from the training state: checked against this run's config and data."""
    cfg, data_sha = run.cfg, run.data_sha
    st = load_torch_dict(state_path, "training state", "--resume")
    if st.get("format") != TRAIN_STATE_FORMAT:
        raise FacemetricsError(f"{state_path} is not a face-Inception training state", "--resume")
    diff = _config_diff(st["config"], cfg)
    if diff:
        raise FacemetricsError(
            "--resume needs the options of the interrupted run; these differ: "
            + ", ".join(f"{k} (was {st['config'].get(k)!r}, now {getattr(cfg, k)!r})" for k in diff),
            "--resume")
    if st["data_sha256"] != data_sha:
        raise FacemetricsError("--resume: the training data changed since the interrupted run "
                               f"(content sha256 {st['data_sha256'][:12]} → {data_sha[:12]})", "--resume")
    if st["epoch"] >= cfg.epochs:
        raise FacemetricsError(f"--resume: {state_path} has already completed {st['epoch']} epochs; "
                               "raise --epochs to train further", "--epochs")
    run.model.load_state_dict(st["model"])
    run.opt.load_state_dict(st["optimizer"])
    _set_rng_state(st["rng"], run.data_gen)
    run.history, run.orders = list(st["history"]), [list(o) for o in st["orders"]]
    run.start = st["epoch"] + 1
    run.report = st["validation"]
    run.say(f"resuming after epoch {st['epoch']} from {state_path}")


def _prepare_images(run: _Run) -> None:
    """The image store and the targets (and masks, multi-label) as tensors."""
    import torch

    cfg, labels = run.cfg, run.labels
    run.store = ImageStore(run.root, labels.names, cfg.preset, cfg.image_size, cfg.cache_mb * 2**20)
    if labels.kind == "single":
        run.all_t = torch.tensor(labels.targets, dtype=torch.long)
        run.all_m = None
    else:
        run.all_t = torch.tensor(labels.targets, dtype=torch.float32)
        run.all_m = torch.tensor(labels.masks, dtype=torch.float32)


def _targets(run: _Run, idx) -> tuple[Any, Any]:
    """(targets, masks or None) of the images ``idx`` (a list or a long tensor)."""
    return run.all_t[idx], (run.all_m[idx] if run.all_m is not None else None)


def _batch_tensor(run: _Run, idx: list[int], flips: list[bool] | None):
    import torch

    from facemetrics.nets.inception import normalize

    xs = []
    for j, i in enumerate(idx):
        x = run.store.get(i)
        if flips is not None and flips[j]:
            x = torch.flip(x, dims=[2])
        xs.append(x)
    return normalize(torch.stack(xs), run.shift, run.scale).to(run.device)


def _evaluate(run: _Run, indices: list[int]):
    import torch

    bs = run.cfg.batch_size
    run.model.eval()
    outs = []
    with torch.no_grad():
        for b in range(0, len(indices), bs):
            outs.append(run.model(_batch_tensor(run, indices[b:b + bs], None))[1].float().cpu())
    return torch.cat(outs)


def _train_epoch(run: _Run, epoch: int) -> None:
    """One epoch over the training images (seeded order and flips), then validation; appends to the history."""
    import torch
    from tqdm import tqdm

    cfg, train_idx, model = run.cfg, run.train_idx, run.model
    perm = torch.randperm(len(train_idx), generator=run.data_gen).tolist()
    flips = (torch.rand(len(train_idx), generator=run.data_gen) < 0.5).tolist() if cfg.hflip else None
    order = [train_idx[k] for k in perm]
    run.orders.append(order)
    model.train()
    model.backbone.eval()  # no batch statistics anywhere in the trunk; kept explicit
    t0 = time.perf_counter()
    tot_loss, tot_n, seen_logits = 0.0, 0, []
    bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}",
               file=sys.stderr, disable=not cfg.progress, unit="batch", leave=False)
    for b in bar:
        idx = order[b:b + cfg.batch_size]
        x = _batch_tensor(run, idx, [flips[perm[b + j]] for j in range(len(idx))] if flips else None)
        tgt, msk = _targets(run, idx)
        _, logits = model(x)
        loss = _loss(run.labels.kind, logits, tgt.to(run.device), msk.to(run.device) if msk is not None else None)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        tot_loss += loss.item() * len(idx)
        tot_n += len(idx)
        seen_logits.append(logits.detach().float().cpu())
        bar.set_postfix(loss=f"{tot_loss / tot_n:.4f}")
    bar.close()
    train_s = time.perf_counter() - t0
    _validate(run, epoch, order, torch.cat(seen_logits), tot_loss / tot_n, tot_n, train_s)


def _validate(run: _Run, epoch: int, order: list[int], seen_logits, train_loss: float, tot_n: int,
              train_s: float) -> None:
    """The epoch's training accuracy and validation report, into the history and the log."""
    import torch

    head = run.labels.head()
    tr_t, tr_m = _targets(run, torch.tensor(run.train_idx, dtype=torch.long))
    val_t, val_m = _targets(run, run.val_idx)
    ord_t, ord_m = _targets(run, torch.tensor(order, dtype=torch.long))
    train_acc = accuracy_report(head, seen_logits, ord_t, ord_m, tr_t, tr_m)["accuracy"]
    val_logits = _evaluate(run, run.val_idx)
    val_loss = _loss(run.labels.kind, val_logits, val_t, val_m).item()
    report = accuracy_report(head, val_logits, val_t, val_m, tr_t, tr_m)
    report.update({"epoch": epoch, "loss": val_loss})
    run.report = report
    run.history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val_loss, "val_acc": report["accuracy"], "chance": report["chance"],
                        "seconds": train_s, "images_per_s": tot_n / train_s})
    run.say(f"epoch {epoch}/{run.cfg.epochs}: train loss {train_loss:.4f} acc {train_acc:.3f} | "
            f"val loss {val_loss:.4f} acc {report['accuracy']:.3f} (chance {report['chance']:.3f}) | "
            f"{tot_n / train_s:.1f} img/s")


def _save_epoch(run: _Run, epoch: int, state_path: Path, out_path: Path) -> None:
    """The training state, the checkpoint and the plot after ``epoch``."""
    from facemetrics.version import __version__

    cfg, labels, report = run.cfg, run.labels, run.report
    config = asdict(cfg)
    model_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    save_torch({
        "format": TRAIN_STATE_FORMAT, "epoch": epoch, "config": config, "data_sha256": run.data_sha,
        "model": model_state, "optimizer": run.opt.state_dict(), "rng": _rng_state(run.data_gen),
        "history": run.history, "orders": run.orders, "validation": report,
        "split": {"train": [labels.names[i] for i in run.train_idx], "val": [labels.names[i] for i in run.val_idx]},
    }, state_path)
    save_torch({
        "format": FORMAT,
        "arch": "inception-v3-tf2015-fid",
        "model": model_state,
        "head": labels.head(),
        "preprocess": {"preset": cfg.preset, "image_size": cfg.image_size,
                       "input": f"(x-{run.shift:g})/{run.scale:g}", "shift": run.shift, "scale": run.scale,
                       "resizer": get_resizer(cfg.preset, cfg.image_size)[1]},
        "base_weights": {"file": run.base_path.name, "sha256": run.base_sha},
        "data": {"root": str(run.root.resolve()), "labels": labels.spec or cfg.labels, "content_sha256": run.data_sha,
                 "n_images": len(labels), "n_train": len(run.train_idx), "n_val": len(run.val_idx),
                 "min_per_class": cfg.min_per_class, "notes": labels.notes},
        "validation": report,
        "history": run.history,
        "config": {k: config[k] for k in config if k not in ("progress", "resume", "plot", "cache_mb")},
        "frozen_blocks": run.frozen,
        "batchnorm": "frozen statistics (mean/var buffers); conv weights and beta trained",
        "epoch": epoch, "complete": epoch == cfg.epochs,
        "facemetrics_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, out_path)
    write_plot(run.history, report["chance"], cfg.plot_path(),
               f"{out_path.name}: {labels.kind}-label, {len(labels.classes)} outputs, "
               f"{cfg.image_size}px, seed {cfg.seed}")
