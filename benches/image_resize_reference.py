"""img2dataset's own image processing timed on the images of `benches/benches/download_image.rs`,
for the figures beside Cascade's `process_image` in docs/download.md.

Per image, one thread (img2dataset's `Resizer` sets `cv2.setNumThreads(1)`): its `Resizer` with
the defaults (`border`, 256, JPEG quality 95), and that plus the EXIF read its downloader does for
every success (`exifread.process_file(…, details=False)`), which `process_image` includes.

Run the Rust benchmark first (it writes the images), then, in a throwaway virtual environment
(not part of CI):

    python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset==1.47.0
    /tmp/i2d/bin/python benches/image_resize_reference.py [target/download-image-bench]
"""

import glob
import io
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import exifread  # noqa: E402  (img2dataset's dependency)
from img2dataset.resizer import Resizer  # noqa: E402


def per_image_us(work, seconds=3.0):
    """Mean microseconds per call over at least `seconds`, after a warm-up."""
    for _ in range(5):
        work()
    calls, start = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "target/download-image-bench"
    paths = sorted(glob.glob(os.path.join(folder, "*.jpg")))
    if not paths:
        sys.exit(f"no images in {folder}: run `cargo bench -p cascade-benches --bench download_image` first")
    resizer = Resizer(image_size=256, resize_mode="border", resize_only_if_bigger=False)
    for path in paths:
        data = open(path, "rb").read()

        def resize():
            img, width, height, _, _, err = resizer(io.BytesIO(data))
            assert err is None and (width, height) == (256, 256), err

        def resize_and_exif():
            resize()
            stream = io.BytesIO(data)
            json.dumps({k: str(v).strip() for k, v in exifread.process_file(stream, details=False).items() if v is not None})

        name = os.path.splitext(os.path.basename(path))[0]
        print(f"{name}: Resizer {per_image_us(resize):.0f} µs/image, with EXIF {per_image_us(resize_and_exif):.0f} µs/image")


if __name__ == "__main__":
    main()
