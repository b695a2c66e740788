"""Figures for people who would rather look than read.

* :func:`plot_curves`: metric-vs-training-step curves from training logs (JSON
  lines, one object per line: ``{"step": int, "losses": {...}, "metrics":
  {"fid": float, ...}}``; lines without metrics are skipped), one panel per
  metric, one line per log; PNG via matplotlib's Agg canvas (no pyplot state).
* :func:`sample_grid`: generated images next to the real image their caption
  describes, caption underneath (PIL); :func:`grid_from_pairs` picks a seeded
  sample of a pairs manifest.
* :func:`plot_extrapolation`: FID (IS) at the sample sizes of a record's ``fid_inf``
  (``is_inf``) against 1/N, with the fitted line and its intercept.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError

# --------------------------------------------------------------------------- training curves


def read_training_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from a JSONL training log (steps in file order).

    Lines without a ``metrics`` object (or with an empty one) are skipped; null
    values are skipped; a line that is not JSON, or has metrics but no integer
    ``step``, is an error naming the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FacemetricsError(f"cannot read training log {path}: {e}", "--curves") from None
    out: dict[str, list[tuple[int, float]]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FacemetricsError(f"{path}:{i}: not JSON ({e.msg})", "--curves") from None
        if not isinstance(obj, dict):
            raise FacemetricsError(f"{path}:{i}: expected a JSON object", "--curves")
        metrics = obj.get("metrics")
        if not metrics:
            continue
        if not isinstance(metrics, dict):
            raise FacemetricsError(f"{path}:{i}: \"metrics\" must be an object", "--curves")
        step = obj.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise FacemetricsError(f"{path}:{i}: a line with metrics needs an integer \"step\"", "--curves")
        for name, v in metrics.items():
            if isinstance(v, dict):  # a record-style {"value": ...}
                v = v.get("value")
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise FacemetricsError(f"{path}:{i}: metric {name!r} is not a number: {v!r}", "--curves")
            if math.isfinite(v):
                out.setdefault(name, []).append((step, float(v)))
    return out


def _run_name(path: Path) -> str:
    return path.parent.name if path.stem in ("log", "train", "metrics", "training") and path.parent.name else path.stem


def plot_curves(logs: list[str | Path], metrics: list[str] | None = None, *, panel_size: tuple[float, float] = (4.0, 3.0),
                dpi: int = 100, max_cols: int = 3) -> bytes:
    """PNG bytes: one panel per metric (up to ``max_cols`` per row), one line per log.

    The image is ``cols·panel_w·dpi`` × ``rows·panel_h·dpi`` pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from facemetrics.report.tables import METRIC_INFO

    if not logs:
        raise FacemetricsError("no training logs given", "--curves")
    series = [(_run_name(Path(p)), read_training_log(p)) for p in logs]
    names = [n for n in METRIC_INFO if any(n in s for _, s in series)]
    names += sorted({n for _, s in series for n in s} - set(names))
    if metrics:
        missing = [m for m in metrics if m not in names]
        if missing:
            raise FacemetricsError(f"metric(s) {', '.join(missing)} not in the training log(s) "
                                   f"(found: {', '.join(names) or 'none'})", "--curves")
        names = list(dict.fromkeys(metrics))
    if not names:
        raise FacemetricsError(f"no metric values in {', '.join(map(str, logs))} (lines need a \"metrics\" object)",
                               "--curves")
    cols = min(max_cols, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        label, up, _ = METRIC_INFO.get(name, (name, None, 4))
        for run, s in series:
            pts = s.get(name)
            if pts:
                steps, vals = zip(*pts)
                ax.plot(steps, vals, marker="o", markersize=3, label=run)
        arrow = "" if up is None else (" ↑" if up else " ↓")
        ax.set_title(f"{label}{arrow}", fontsize=10)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- FID∞ / IS∞ fit


def plot_extrapolation(record: dict[str, Any], metrics: list[str] | None = None, *,
                       panel_size: tuple[float, float] = (4.5, 3.2), dpi: int = 100) -> bytes:
    """PNG bytes: per extrapolated metric of a record (``fid_inf``, ``is_inf``), its values at the 15 sample
    sizes against 1/N, the least-squares line value = a + s/N down to 1/N = 0, and a (the ∞ value)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    have = [m for m in ("fid_inf", "is_inf") if (record.get("metrics") or {}).get(m)]
    names = list(dict.fromkeys(metrics)) if metrics else have
    missing = [m for m in names if m not in have]
    if missing or not names:
        raise FacemetricsError(f"the record has no {', '.join(missing) or 'fid_inf/is_inf'} result (score with "
                               "--metrics fid_inf or is_inf)", "RECORD")
    fig = Figure(figsize=(panel_size[0] * len(names), panel_size[1]), dpi=dpi)
    FigureCanvasAgg(fig)
    for k, name in enumerate(names):
        m = record["metrics"][name]
        det = m["details"]
        x = 1.0 / np.asarray(det["sizes"], dtype=np.float64)
        ax = fig.add_subplot(1, len(names), k + 1)
        ax.plot(x, det["values"], "o", markersize=4, label=f"{name[:-4].upper()} at N")
        line = np.linspace(0.0, x.max(), 50)
        ax.plot(line, m["value"] + det["slope"] * line, "-", linewidth=1,
                label=f"fit: {m['value']:.4g} + {det['slope']:.4g}/N (rms {det['rms']:.2g})")
        ax.plot([0.0], [m["value"]], "s", markersize=6, label=f"{name.upper().replace('_INF', '∞')} = {m['value']:.4g}")
        ax.set_xlabel("1 / N (N = images drawn)", fontsize=8)
        ax.set_title(f"{name[:-4].upper()} vs 1/N, seed {det.get('seed')}", fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- sample grid


@dataclass
class GridItem:
    fake: np.ndarray  # H×W×3 uint8
    real: np.ndarray | None
    caption: str


def _fit(img: np.ndarray, cell: int):
    """The image scaled to fit a cell×cell square (aspect kept), centred on white."""
    from PIL import Image

    im = Image.fromarray(np.asarray(img, dtype=np.uint8))
    scale = cell / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    canvas = Image.new("RGB", (cell, cell), "white")
    canvas.paste(im, ((cell - im.width) // 2, (cell - im.height) // 2))
    return canvas


def _wrap(text: str, font, width: int, max_lines: int) -> list[str]:
    words = " ".join(text.split()).split(" ")
    lines: list[str] = []
    cur = ""
    for w in words:
        trial = f"{cur} {w}".strip()
        if font.getlength(trial) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = w
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def sample_grid(items: list[GridItem], *, cell: int = 128, cols: int = 4, caption_lines: int = 4,
                font_size: int = 11, gap: int = 8):
    """A PIL image: tiles of [generated | real] with the caption underneath.

    Size: width ``cols·(2·cell + gap) + gap``, height ``rows·(header + cell +
    caption_lines·line_h + gap) + gap``, where ``header = line_h + 2`` labels the
    two columns of each tile.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not items:
        raise FacemetricsError("no samples for the grid", "--grid")
    font = ImageFont.load_default(size=font_size)
    asc, desc = font.getmetrics()
    line_h = asc + desc + 1
    header = line_h + 2
    cols = max(1, min(cols, len(items)))
    rows = math.ceil(len(items) / cols)
    tile_w, tile_h = 2 * cell, header + cell + caption_lines * line_h
    W = cols * (tile_w + gap) + gap
    H = rows * (tile_h + gap) + gap
    out = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(out)
    for k, it in enumerate(items):
        x0 = gap + (k % cols) * (tile_w + gap)
        y0 = gap + (k // cols) * (tile_h + gap)
        draw.text((x0 + 2, y0), "generated", fill=(90, 90, 90), font=font)
        draw.text((x0 + cell + 2, y0), "real", fill=(90, 90, 90), font=font)
        out.paste(_fit(it.fake, cell), (x0, y0 + header))
        if it.real is not None:
            out.paste(_fit(it.real, cell), (x0 + cell, y0 + header))
        else:
            draw.rectangle([x0 + cell, y0 + header, x0 + 2 * cell - 1, y0 + header + cell - 1], fill=(235, 235, 235))
            draw.text((x0 + cell + 6, y0 + header + cell // 2 - line_h // 2), "(no real image)", fill=(120, 120, 120),
                      font=font)
        for j, line in enumerate(_wrap(it.caption or "(no caption)", font, tile_w - 4, caption_lines)):
            draw.text((x0 + 2, y0 + header + cell + j * line_h), line, fill=(0, 0, 0), font=font)
    return out


def _read_real(real: Path) -> np.ndarray:
    from facemetrics.imaging.images import DECODE_ERRORS, decode_rgb

    try:
        if real.is_file():
            return decode_rgb(real.read_bytes())
        # a "<archive.zip>/<member>" pseudo-path (pairs manifests with a zipped REAL)
        import zipfile

        parts = real.parts
        for i in range(len(parts) - 1, 0, -1):
            head = Path(*parts[:i])
            if head.suffix.lower() == ".zip" and head.is_file():
                with zipfile.ZipFile(head) as zf:
                    return decode_rgb(zf.read("/".join(parts[i:])))
        raise FileNotFoundError(f"no such file: {real}")
    except (FileNotFoundError, KeyError) + DECODE_ERRORS as e:
        raise FacemetricsError(f"cannot read real image {real}: {e}", "--pairs") from None


def grid_from_pairs(pairs: list, fake_source, *, n: int = 8, seed: int = 0, **grid_kw: Any):
    """A :func:`sample_grid` of ``n`` manifest rows (PairRecords) drawn with ``seed``, kept in manifest order.

    ``fake_source`` is the :class:`~facemetrics.imaging.images.ImageSource` the rows' ``fake`` paths are relative to.
    """
    from facemetrics.imaging.images import DECODE_ERRORS, load_rgb

    if not pairs:
        raise FacemetricsError("the pairs manifest has no rows", "--pairs")
    pick = np.sort(np.random.default_rng(seed).choice(len(pairs), size=min(n, len(pairs)), replace=False))
    items = []
    for i in pick:
        p = pairs[int(i)]
        try:
            fake = load_rgb(fake_source, p.fake)
        except (FileNotFoundError, KeyError) + DECODE_ERRORS as e:
            raise FacemetricsError(f"cannot read generated image {fake_source.path_of(p.fake)}: {e}",
                                   "--pairs") from None
        real = _read_real(Path(p.real)) if p.real is not None else None
        items.append(GridItem(fake, real, p.caption or ""))
    return sample_grid(items, **grid_kw)


def grid_from_manifest(pairs_path: str | Path, fake_root: str | Path, real_root: str | Path | None = None,
                       **kw: Any):
    """:func:`grid_from_pairs` of a pairs manifest file (read by :func:`facemetrics.pairing.captions.load_pairs`)."""
    from facemetrics.pairing.captions import load_pairs
    from facemetrics.imaging.images import scan

    src = scan(fake_root, "FAKE")
    return grid_from_pairs(load_pairs(pairs_path, fake_root, real_root), src, **kw)


def png_bytes(image) -> bytes:
    """PNG encoding of a PIL image."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
