"""Turn a real picture of a digit into what the model was trained on: an MNIST vector.

MNIST digits are light on a dark background, cropped to their ink, scaled (anti-aliased, aspect
kept) so the longer side is 20 pixels, and placed in a 28x28 field so that their centre of mass
is at the centre; values are in [0, 1]. A photo or a drawing is usually dark ink on light paper,
of any size, with noise. This module does that conversion with Pillow and numpy only (no
Airflow, no scipy), so the Chalice app can ship it to Lambda as it is.

Bad input raises :class:`ImageRejected` with an HTTP status and a message meant for the caller.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

#: The only picture formats decoded (Image.open tries no other decoder).
ACCEPTED_FORMATS = ("JPEG", "PNG")
#: Larger pictures are refused before they are decoded (an image bomb stays a small upload).
MAX_PIXELS = 40_000_000
#: Pictures are reduced to this many pixels on their longer side before analysis; a digit
#: drawn across a phone photo keeps far more than MNIST's 20 pixels.
WORK_SIZE = 256
#: Ink is what differs from the background by more than this fraction of the contrast range.
INK_THRESHOLD = 0.2
#: Less contrast than this (0-255 scale) is a blank picture, not a faint digit.
MIN_CONTRAST = 40


class ImageRejected(ValueError):
    """The picture cannot be classified; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def open_image(data: bytes) -> Image.Image:
    """Decode ``data`` to a grayscale image, refusing what is not a complete, sane picture."""
    if not data:
        raise ImageRejected("the request body is empty; send a JPEG or PNG picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only these decoders run on an upload: Pillow would otherwise try every format it knows.
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageRejected(
                    f"the picture is {width}x{height} pixels; at most {MAX_PIXELS:,} pixels are accepted", 413)
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: most of the cost of a big photo.
            image.draft("L", (WORK_SIZE, WORK_SIZE))
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"the picture is too large to decode; at most {MAX_PIXELS:,} pixels are accepted",
                            413) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("the body is not a picture we can read; send a JPEG or PNG") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"the picture is damaged or truncated: {exc}") from exc
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels are paper: a drawing on a transparent canvas has ink only where drawn.
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    image = image.convert("L")
    image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return image


def ink_map(image: Image.Image) -> np.ndarray:
    """Float array in [0, 1]: 0 is background, 1 the strongest ink, whatever the polarity."""
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = float(np.median(border))
    # Ink is whatever lies on the far side of the background: dark on light paper, light on dark.
    ink = background - pixels if background >= 128 else pixels - background
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise ImageRejected("the picture looks blank: no digit stands out from the background", 422)
    ink = np.clip(ink / contrast, 0.0, 1.0)
    ink[ink < INK_THRESHOLD] = 0.0
    return ink


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop, scale to 20 pixels, centre by mass in 28x28: a float32 vector of 784 values."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    small = np.asarray(digit, dtype=np.float32) / 255.0
    field = np.zeros((28, 28), dtype=np.float32)
    mass = small.sum()
    ys, xs = np.indices(small.shape)
    centre_y = (ys * small).sum() / mass if mass else small.shape[0] / 2
    centre_x = (xs * small).sum() / mass if mass else small.shape[1] / 2
    top = int(np.clip(round(14 - centre_y), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - centre_x), 0, 28 - small.shape[1]))
    field[top: top + small.shape[0], left: left + small.shape[1]] = small
    return np.clip(field, 0.0, 1.0).reshape(784)


def mnist_vector(data: bytes) -> np.ndarray:
    """The whole conversion: picture bytes → float32 (784,) in [0, 1]."""
    return to_mnist(ink_map(open_image(data)))
