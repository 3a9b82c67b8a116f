"""Pictures → MNIST vectors: real-looking pictures classify right, bad ones get a clear status."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from ferry.digits.preprocess import ImageRejected, mnist_vector

from .conftest import photo_of


def test_output_is_an_mnist_vector(splits):
    _, _, (test_x, _) = splits
    vector = mnist_vector(photo_of(test_x[0]))
    assert vector.shape == (784,) and vector.dtype == np.float32
    assert vector.min() >= 0.0 and vector.max() <= 1.0
    image = vector.reshape(28, 28)
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # the digit fits in 20x20
    ys, xs = np.indices(image.shape)
    assert abs((ys * image).sum() / image.sum() - 14) <= 1  # centred by mass
    assert abs((xs * image).sum() / image.sum() - 14) <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_photos_of_test_digits_classify_correctly(svm_model, splits, fmt):
    """Dark-on-light, 300 px, off-centre pictures of the held-out digits: the API's real input."""
    _, _, (test_x, test_y) = splits
    vectors = np.vstack([mnist_vector(photo_of(x, fmt=fmt)) for x in test_x[:200]])
    accuracy = (svm_model.predict(vectors) == test_y[:200]).mean()
    print(f"\n  svm accuracy on 200 {fmt} photos of test digits: {accuracy:.3f}")
    assert accuracy >= 0.9


def test_light_on_dark_and_transparent_pictures_work(splits):
    _, _, (test_x, _) = splits
    reference = mnist_vector(photo_of(test_x[3], fmt="PNG"))
    light_on_dark = Image.fromarray((test_x[3].reshape(28, 28) * 255).astype(np.uint8)).resize((280, 280))
    out = io.BytesIO()
    light_on_dark.save(out, "PNG")
    assert np.abs(mnist_vector(out.getvalue()) - reference).mean() < 0.05
    # Black ink on a transparent canvas (what a drawing app exports).
    rgba = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    alpha = light_on_dark
    rgba.putalpha(alpha)
    out = io.BytesIO()
    rgba.save(out, "PNG")
    assert np.abs(mnist_vector(out.getvalue()) - reference).mean() < 0.05


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG header claiming width x height, with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def picture_as(fmt: str) -> bytes:
    """A clear digit-like picture in a format Pillow can decode but the API must not."""
    out = io.BytesIO()
    picture = Image.new("L", (60, 60), 240)
    picture.paste(0, (25, 10, 35, 50))
    picture.save(out, fmt)
    return out.getvalue()


def blank_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("L", (200, 200), 240).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"this is not a picture at all", 400, "not a picture"),
        ("truncated", 400, "truncated"),
        (png_bomb(50_000, 50_000), 413, "at most"),
        (blank_jpeg(), 422, "blank"),
        (picture_as("GIF"), 400, "not a picture we can read"),
        (picture_as("BMP"), 400, "not a picture we can read"),
        (picture_as("TIFF"), 400, "not a picture we can read"),
        (picture_as("PPM"), 400, "not a picture we can read"),
    ],
    ids=["empty", "not-an-image", "truncated", "image-bomb", "blank", "gif", "bmp", "tiff", "ppm"],
)
def test_bad_pictures_are_rejected_with_a_status(body, status, words, splits):
    if body == "truncated":
        _, _, (test_x, _) = splits
        whole = photo_of(test_x[0])
        body = whole[: len(whole) // 2]
    with pytest.raises(ImageRejected, match=words) as caught:
        mnist_vector(body)
    assert caught.value.status == status
