"""Printed digits, generated here: training data for the classifier and a check it never saw.

MNIST holds handwriting only, so a model trained on it alone misreads printed digits (0.88 on
the held-out fonts below). This module renders each digit in a font at a random size, stroke
width, rotation (±12°) and slant (±0.3), photographs it as dark ink on light paper, and runs it
through the API's own preprocessing (ferry.digits.preprocess), so it looks exactly like what the
endpoint receives from the API.

Fonts are split by family: the DejaVu Sans family and Pillow's built-in font make training
data; DejaVu Serif, STIX and Computer Modern are kept for evaluation only, so an accuracy on
them says something about fonts the model never saw. All come from Pillow and matplotlib's
packages, so they are here on every machine ferry installs on.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ferry.digits.preprocess import ImageRejected, mnist_vector

TRAINING_FAMILIES = ("DejaVuSans.", "DejaVuSans-", "DejaVuSansMono")
HELD_OUT_FAMILIES = ("DejaVuSerif.", "DejaVuSerif-", "STIXGeneral", "cmr10", "cmb10", "cmss10", "cmti10", "cmtt10")


def font_files(families: tuple[str, ...]) -> list[Path]:
    import matplotlib

    directory = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(path for path in directory.glob("*.ttf") if path.name.startswith(families))


def render(digit: int, font: Any, *, stroke: int, angle: float, slant: float) -> bytes:
    from PIL import Image, ImageDraw

    paper = Image.new("L", (260, 260), 245)
    ImageDraw.Draw(paper).text((60, 30), str(digit), font=font, fill=20, stroke_width=stroke, stroke_fill=20)
    paper = paper.rotate(angle, fillcolor=245, resample=Image.Resampling.BILINEAR)
    paper = paper.transform(paper.size, Image.Transform.AFFINE, (1, slant, 0, 0, 1, 0), fillcolor=245)
    out = io.BytesIO()
    paper.save(out, "PNG")
    return out.getvalue()


def printed_digits(fonts: list[Path | None], per_digit: int = 20, seed: int = 1,
                   vary: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST vectors and labels: ``per_digit`` renderings of each digit per font (None: Pillow's own)."""
    from PIL import ImageFont

    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for path in fonts:
        for digit in range(10):
            for _ in range(per_digit):
                size = int(rng.integers(60, 140))
                font = ImageFont.truetype(str(path), size) if path else ImageFont.load_default(size=size)
                picture = render(digit, font, stroke=int(rng.integers(0, 5)) if vary else 0,
                                 angle=float(rng.uniform(-12, 12)) if vary else 0.0,
                                 slant=float(rng.uniform(-0.3, 0.3)) if vary else 0.0)
                try:
                    vectors.append(mnist_vector(picture))
                except ImageRejected:  # a font without a glyph for it draws nothing
                    continue
                labels.append(digit)
    return np.asarray(vectors, dtype=np.float32), np.asarray(labels)


def training_digits(per_digit: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return printed_digits([*font_files(TRAINING_FAMILIES), None], per_digit)


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """Each digit once per held-out font, upright and plain, as printed on a page."""
    return printed_digits(font_files(HELD_OUT_FAMILIES), per_digit=1, vary=False)


def upload_training_digits(s3: Any, bucket: str, key: str = "synthetic_digits/printed.recordio") -> dict[str, Any]:
    """The training digits as RecordIO-protobuf with labels: the ``synthetic`` channel."""
    from ferry.sagemaker.recordio import write_numpy_to_dense_tensor

    vectors, labels = training_digits()
    body = io.BytesIO()
    write_numpy_to_dense_tensor(body, vectors, labels.astype(np.float32))
    s3.put_object(Bucket=bucket, Key=key, Body=body.getvalue())
    return {"records": len(labels), "uri": f"s3://{bucket}/{key}"}
