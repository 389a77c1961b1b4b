# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
sensor_msgs Image / CompressedImage <-> numpy, without rclpy (cv_bridge only if installed).

Duck-typed on the message fields (``height``, ``width``, ``encoding``, ``step``, ``data``;
``format``, ``data``): callers pass a message class (or an instance to fill) so this module
imports no ROS package. Images come out as HxWx3 uint8 RGB, label maps as HxW uint8.
Anything malformed raises :class:`CodecError`.

Camera encodings read here (``ENCODINGS``): rgb8, bgr8, rgba8, bgra8, mono8; OpenCV's
8UC1 (mono), 8UC3 (BGR) and 8UC4 (BGRA), as cv_bridge reads them; YUV 4:2:2 as USB cameras
send it: ``yuv422`` and ``uyvy`` (U Y0 V Y1), ``yuv422_yuy2`` and ``yuyv`` (Y0 U Y1 V),
BT.601 video range, even widths; raw Bayer ``bayer_rggb8``, ``bayer_bggr8``,
``bayer_gbrg8``, ``bayer_grbg8`` (demosaicked per 2x2 cell: full size, half the colour
resolution, enough for a segmentation input of a few hundred pixels across). Any other
encoding goes through cv_bridge (``imgmsg_to_cv2(msg, 'rgb8')``: 16-bit, float, ...) when it
can be imported, else it is refused with the list above.
"""

from __future__ import annotations

import array
import io

import numpy as np
from PIL import Image

# encoding (lower case) -> (bytes per pixel, permutation to RGB or None)
ENCODINGS = {'rgb8': (3, None), 'bgr8': (3, [2, 1, 0]), 'mono8': (1, None),
             'rgba8': (4, [0, 1, 2]), 'bgra8': (4, [2, 1, 0]),
             '8uc1': (1, None), '8uc3': (3, [2, 1, 0]), '8uc4': (4, [2, 1, 0]),
             'yuv422': (2, None), 'uyvy': (2, None), 'yuv422_yuy2': (2, None),
             'yuyv': (2, None),
             'bayer_rggb8': (1, None), 'bayer_bggr8': (1, None), 'bayer_gbrg8': (1, None),
             'bayer_grbg8': (1, None)}
# What array_to_image writes (the edge's outputs).
OUTPUT_ENCODINGS = ('rgb8', 'bgr8', 'mono8', 'rgba8', 'bgra8')
# Refuse decompressing anything larger than this (a 64 Mpx "zip bomb" guard).
MAX_PIXELS = 64 << 20


class CodecError(ValueError):
    """A malformed image: unknown encoding, size mismatch, corrupt compressed data."""


def _bytes_view(data) -> np.ndarray:
    # rclpy gives array.array('B') (buffer protocol, no copy); tests may use bytes or lists.
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, np.uint8)


def _set_data(msg, buf: bytes) -> None:
    # array.array('B', bytes) is a memcpy; rclpy would check a bytes/list element by element.
    msg.data = array.array('B', buf)


def _new(msg_or_cls):
    return msg_or_cls() if isinstance(msg_or_cls, type) else msg_or_cls


def image_to_array(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """
    Return the pixels of a raw Image as HxWxC uint8 (HxW for mono8), in its own order.

    Raise CodecError for an unknown encoding, a zero size or more than ``max_pixels``
    pixels, a step shorter than a row, or data that does not hold ``height`` rows of
    ``step`` bytes (the last row's padding may be missing).
    """
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS:
        raise CodecError(f'unsupported encoding {str(msg.encoding)[:32]!r}; use one of '
                         f'{", ".join(ENCODINGS)} (others with cv_bridge installed)')
    ch = ENCODINGS[enc][0]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise CodecError(f'bad image size {w}x{h}')
    if h * w > max_pixels:
        raise CodecError(f'image too large: {w}x{h} is over the limit of {max_pixels} pixels')
    if step < w * ch:
        raise CodecError(f'step {step} < width {w} x {ch} channels')
    buf = _bytes_view(msg.data)
    # More bytes than height x step means the step or the height is wrong, as surely as
    # fewer: either way the rows would be cut in the wrong places.
    if not step * (h - 1) + w * ch <= buf.size <= step * h:
        raise CodecError(f'{buf.size} data bytes for {w}x{h} {enc} with step {step} '
                         f'(expected {step * h})')
    # Rows may be padded to ``step`` bytes: view with strides, copy only the pixels.
    rows = np.lib.stride_tricks.as_strided(buf, (h, w * ch), (step, 1))
    px = np.ascontiguousarray(rows).reshape(h, w, ch)
    return px[:, :, 0] if ch == 1 else px


def image_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """
    Return a raw Image as HxWx3 uint8 RGB.

    Mono is replicated, alpha dropped, YUV converted, Bayer demosaicked; an encoding not in
    ENCODINGS goes through cv_bridge when it is installed.
    """
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS and cv_bridge() is not None:
        return _via_cv_bridge(msg, max_pixels)
    px = image_to_array(msg, max_pixels)
    if enc in _YUV:
        return _yuv422_to_rgb(px, _YUV[enc])
    if enc.startswith('bayer_'):
        return _demosaic(px, enc[len('bayer_'):-1])
    if px.ndim == 2:
        return np.repeat(px[:, :, None], 3, axis=2)
    perm = ENCODINGS[enc][1]
    return np.ascontiguousarray(px[:, :, perm]) if perm is not None else px


# YUV 4:2:2 byte order: the index of Y in each 2-byte pixel (the other byte is U or V, U
# on even pixels, V on odd ones).
_YUV = {'yuv422': 1, 'uyvy': 1, 'yuv422_yuy2': 0, 'yuyv': 0}


def _yuv422_to_rgb(px: np.ndarray, y_at: int) -> np.ndarray:
    h, w = px.shape[:2]
    if w % 2:
        raise CodecError(f'YUV 4:2:2 needs an even width, not {w}')
    y = px[:, :, y_at].astype(np.float32) - 16.0
    chroma = px[:, :, 1 - y_at]
    u = np.repeat(chroma[:, 0::2], 2, axis=1).astype(np.float32) - 128.0
    v = np.repeat(chroma[:, 1::2], 2, axis=1).astype(np.float32) - 128.0
    # ITU-R BT.601, video range (what OpenCV and cv_bridge use for these encodings).
    y *= 1.164
    rgb = np.stack([y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u], axis=2)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Demosaic a Bayer mosaic per 2x2 cell (``pattern``: rggb, bggr, gbrg or grbg)."""
    h, w = raw.shape
    if h % 2 or w % 2:  # an odd last row or column: complete the cells with the row or
        # column before it, which has the pattern's parity (a single one: repeated)
        mode = 'reflect' if min(h, w) >= 2 else 'edge'
        raw = np.pad(raw, ((0, h % 2), (0, w % 2)), mode=mode)
    at = {c: [] for c in 'rgb'}
    for i, c in enumerate(pattern):
        at[c].append(raw[i // 2::2, i % 2::2].astype(np.uint16))
    cells = np.stack([at['r'][0], (at['g'][0] + at['g'][1] + 1) // 2, at['b'][0]], axis=2)
    full = np.repeat(np.repeat(cells.astype(np.uint8), 2, axis=0), 2, axis=1)
    return np.ascontiguousarray(full[:h, :w])


_CV_BRIDGE: list = []


def cv_bridge():
    """Return a cv_bridge.CvBridge when cv_bridge can be imported, else None (cached)."""
    if not _CV_BRIDGE:
        try:
            from cv_bridge import CvBridge
            _CV_BRIDGE.append(CvBridge())
        except Exception:  # ImportError, or cv2 / its libraries missing
            _CV_BRIDGE.append(None)
    return _CV_BRIDGE[0]


def _via_cv_bridge(msg, max_pixels: int) -> np.ndarray:
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise CodecError(f'bad image size {w}x{h}')
    if h * w > max_pixels:
        raise CodecError(f'image too large: {w}x{h} is over the limit of {max_pixels} pixels')
    try:
        out = np.asarray(cv_bridge().imgmsg_to_cv2(msg, desired_encoding='rgb8'))
    except Exception as e:  # CvBridgeError, a malformed message
        raise CodecError(f'encoding {str(msg.encoding)[:32]!r} through cv_bridge: '
                         f'{str(e)[:200]}') from None
    if out.shape != (h, w, 3) or out.dtype != np.uint8:
        raise CodecError(f'cv_bridge gave {out.shape} {out.dtype} for {w}x{h} '
                         f'{str(msg.encoding)[:32]!r}')
    return np.ascontiguousarray(out)


def array_to_image(arr: np.ndarray, msg_or_cls, encoding: str | None = None,
                   header=None):
    """Fill an Image from HxW (mono8) or HxWx3 (rgb8 unless ``encoding`` says bgr8) uint8."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.uint8:
        raise CodecError(f'expected uint8 pixels, got {arr.dtype}')
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    encoding = encoding or {1: 'mono8', 3: 'rgb8', 4: 'rgba8'}.get(ch, '')
    if encoding not in OUTPUT_ENCODINGS or ENCODINGS[encoding][0] != ch:
        raise CodecError(f'cannot store {arr.shape} pixels as {encoding!r}')
    msg = _new(msg_or_cls)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, int(arr.shape[1] * ch)
    _set_data(msg, arr.tobytes())
    return msg


def _open(data, formats: tuple[str, ...], max_pixels: int,
          shape: tuple[int, int] | None = None) -> Image.Image:
    raw = _bytes_view(data).tobytes()
    if not raw:
        raise CodecError('empty compressed image')
    try:
        # Only the formats a message may carry: PIL would otherwise also try every plugin
        # it has (TIFF, EPS - which runs Ghostscript - and more) on untrusted bytes.
        im = Image.open(io.BytesIO(raw), formats=formats)
        # The size is in the header: check it before decompressing (a "zip bomb" guard).
        if im.width * im.height > max_pixels:
            raise CodecError(f'compressed image too large: {im.width}x{im.height} is over '
                             f'the limit of {max_pixels} pixels')
        if shape is not None and (im.height, im.width) != tuple(shape):
            raise CodecError(f'size {im.width}x{im.height}, expected {shape[1]}x{shape[0]}')
        im.load()
    except CodecError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own limit, checked in open()
        raise CodecError(f'compressed image too large: {e}') from e
    except MemoryError:
        raise
    except Exception as e:
        # PIL's decoders raise a zoo of types on hostile bytes (OSError, SyntaxError,
        # EOFError, struct.error, IndexError, ...): all mean the same thing to a caller,
        # corrupt data.
        raise CodecError(f'corrupt compressed image: {type(e).__name__}: '
                         f'{str(e)[:200]}') from e
    return im


def compressed_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a CompressedImage (JPEG or PNG, any colour mode) to HxWx3 uint8 RGB."""
    im = _open(msg.data, ('JPEG', 'PNG'), max_pixels)
    try:
        return np.asarray(im.convert('RGB'))
    except (OSError, ValueError) as e:  # a mode PIL cannot convert
        raise CodecError(f'cannot convert PNG/JPEG mode {im.mode} to RGB: {e}') from e


def compressed_to_label(msg, shape: tuple[int, int] | None = None,
                        max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """
    Decode a PNG label map (mono8 / palette indices) to HxW uint8 class ids.

    ``shape`` (H, W), when given, is checked from the PNG header before decompressing.
    """
    im = _open(msg.data, ('PNG',), max_pixels, shape)
    if im.mode not in ('L', 'P'):
        raise CodecError(f'label map must be 8-bit single channel, got PNG mode {im.mode}')
    return np.asarray(im)


def to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode either message type to HxWx3 uint8 RGB, refusing more than ``max_pixels``."""
    if hasattr(msg, 'encoding'):
        return image_to_rgb(msg, max_pixels)
    return compressed_to_rgb(msg, max_pixels)


def resize_nearest(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxW map (class ids, confidences) by index arithmetic."""
    if arr.shape[:2] == (h, w):
        return arr
    fy, fx = h // arr.shape[0], w // arr.shape[1]
    if (fy * arr.shape[0], fx * arr.shape[1]) == (h, w):  # integer factors: 5x faster
        return arr.repeat(fy, 0).repeat(fx, 1)
    rows = np.arange(h) * arr.shape[0] // h
    cols = np.arange(w) * arr.shape[1] // w
    return arr[rows[:, None], cols[None, :]]


def shrink(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """Return ``rgb`` scaled down (aspect kept, bilinear) to at most ``max_pixels`` pixels."""
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    f = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(w * f)), max(1, int(h * f)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.BILINEAR))


def encode_compressed(arr: np.ndarray, msg_or_cls, fmt: str = 'jpeg', quality: int = 90,
                      header=None):
    """Fill a CompressedImage with ``arr`` (HxWx3 RGB or HxW mono8) as JPEG or PNG."""
    fmt = fmt.lower()
    if fmt not in ('jpeg', 'png'):
        raise CodecError(f'unsupported compressed format {fmt!r}; use jpeg or png')
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise CodecError(f'cannot compress {arr.dtype} array of shape {arr.shape}')
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    if fmt == 'jpeg':
        im.save(buf, format='JPEG', quality=int(quality))
    else:
        # compress_level 1: label maps compress well anyway, and the edge has 2 cores.
        im.save(buf, format='PNG', compress_level=1)
    msg = _new(msg_or_cls)
    if header is not None:
        msg.header = header
    msg.format = fmt
    _set_data(msg, buf.getvalue())
    return msg
