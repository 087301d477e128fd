"""The demo's test set: document pages rendered, turned by known multiples of 90 degrees, and labelled.

Used by ``prepare_demo.py`` to render the test images: draws 10 deterministic pages with Pillow,
turns each by its label times 90 degrees clockwise, resizes and crops them as the wheel does, and
writes ``imgs.npy``, ``lbs.npy`` and ``names.txt``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from demo_model import CLASS_NAMES, INPUT_SIZE, RESIZE_SHORT, StepError, say, write_if_changed

if TYPE_CHECKING:
    from PIL import Image as PILImage

# --- the test set ---------------------------------------------------------------------------

# Fixed and spread over all four classes; not sorted so that every batch of 8 mixes classes.
IMAGE_LABELS = (1, 3, 0, 2, 2, 0, 3, 1, 0, 3)
RENDER_SEED = 20240611


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialise an array in .npy format."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# --- step 3: render the test images ---------------------------------------------------------

_VOCABULARY = (
    "the model server loads every version of a model found in the repository and answers "
    "prediction requests over grpc and rest with the same interface as the original so that "
    "existing clients need no change at all when they move batch size shape reshape request "
    "response tensor configuration status metadata latency throughput queue stream device "
    "plugin memory thread report table figure section result method value number order page "
    "document letter invoice account total amount date name address customer service contract "
    "payment period annual review summary introduction conclusion appendix reference"
).split()


def render_page(rnd: random.Random) -> PILImage.Image:
    """Draw a portrait page of black paragraphs on white, like a scanned letter or report."""
    from PIL import Image, ImageDraw, ImageFont

    width = rnd.randrange(1000, 1200, 20)
    height = int(width * rnd.uniform(1.35, 1.45))
    size = rnd.randrange(38, 48, 2)
    margin = rnd.randrange(60, 110, 10)
    leading = int(size * rnd.uniform(1.35, 1.6))
    body = ImageFont.load_default(size=size)
    heading = ImageFont.load_default(size=int(size * 1.5))

    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    words = rnd.sample(_VOCABULARY, 3)
    draw.text((margin, margin), " ".join(words).title(), fill=0, font=heading)
    y = margin + int(size * 3)
    while y + size < height - margin:
        # A paragraph: full lines, then a shorter last line, then a blank line.
        for i in range(rnd.randint(3, 7)):
            indent = size * 2 if i == 0 else 0
            line: list[str] = []
            while True:
                candidate = line + [rnd.choice(_VOCABULARY)]
                if draw.textlength(" ".join(candidate), font=body) > width - 2 * margin - indent:
                    break
                line = candidate
            if i > 0 and rnd.random() < 0.25:
                line = line[: rnd.randint(2, len(line))]
            if y + size >= height - margin:
                break
            draw.text((margin + indent, y), " ".join(line), fill=0, font=body)
            y += leading
        y += leading
    return page


def to_model_input(page: PILImage.Image) -> np.ndarray:
    """Resize the short side to 256 and centre-crop 224 (as the wheel does); return CHW 0..255 RGB."""
    from PIL import Image

    w, h = page.size
    scale = RESIZE_SHORT / min(w, h)
    page = page.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    w, h = page.size
    left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
    crop = np.asarray(page.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE)).convert("RGB"), np.float32)
    # Stretch to exactly 0..255 so the example client's (x - min) / ptp * 255 rescale is a no-op.
    lo, hi = float(crop.min()), float(crop.max())
    crop = np.round((crop - lo) / (hi - lo) * 255.0)
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def turn(page: PILImage.Image, label: int) -> PILImage.Image:
    """Turn the page ``label * 90`` degrees clockwise (PIL's ROTATE_* constants turn counter-clockwise)."""
    from PIL import Image

    clockwise = {
        0: None,
        1: Image.Transpose.ROTATE_270,
        2: Image.Transpose.ROTATE_180,
        3: Image.Transpose.ROTATE_90,
    }[label]
    return page if clockwise is None else page.transpose(clockwise)


def make_images(out: Path, force: bool) -> tuple[np.ndarray, np.ndarray]:
    """Render the 10 turned pages and write imgs.npy, lbs.npy and names.txt."""
    try:
        from PIL import features
    except ImportError as exc:
        raise StepError("Pillow is not installed (pip install 'pillow>=10.1')") from exc
    if not features.check("freetype2"):
        raise StepError("this Pillow has no FreeType support, needed to draw scalable text")

    rnd = random.Random(RENDER_SEED)
    images = np.stack([to_model_input(turn(render_page(rnd), label)) for label in IMAGE_LABELS])
    labels = np.asarray(IMAGE_LABELS, dtype=np.int64)
    files = {
        "imgs.npy": npy_bytes(images.astype(np.float32)),
        "lbs.npy": npy_bytes(labels),
        "names.txt": ("\n".join(CLASS_NAMES) + "\n").encode(),
    }
    changed = [name for name, data in files.items() if write_if_changed(out / name, data, force)]
    counts = ", ".join(f"{CLASS_NAMES[k]}: {int((labels == k).sum())}" for k in range(len(CLASS_NAMES)))
    say(f"  {images.shape} {images.dtype} NCHW RGB, range {images.min():.0f}..{images.max():.0f}; {counts}")
    say(f"  {'wrote ' + ', '.join(changed) if changed else 'unchanged'} in {out}")
    return images, labels
