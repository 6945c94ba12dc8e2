import io

import numpy as np
import pytest
from PIL import Image

from skinlesion.data.images import ImageDecodeError, load_rgb


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    Image.new(mode, (20, 10)).save(path)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (20, 10)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((6, 6), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode.startswith("I")
    px = np.asarray(load_rgb(tmp_path / "x.png"))
    assert px.shape == (6, 6, 3) and abs(int(px[0, 0, 0]) - 128) <= 1


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "t.png")
    assert tuple(np.asarray(load_rgb(tmp_path / "t.png"))[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").size == (20, 40)


def test_bad_files_get_clear_errors(tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="text.jpg: not an image"):
        load_rgb(tmp_path / "text.jpg")
    with pytest.raises(ImageDecodeError, match="cut.jpg: truncated or corrupt"):
        load_rgb(tmp_path / "cut.jpg")
    with pytest.raises(ImageDecodeError, match="big.png: 100x100 = 10,000 pixels exceeds the limit"):
        load_rgb(tmp_path / "big.png", max_pixels=5000)
    with pytest.raises(ImageDecodeError, match="gone.jpg: file not found"):
        load_rgb(tmp_path / "gone.jpg")


def test_bmp_and_tiff_images_are_found_and_decoded_like_png(tmp_path):
    """PH2 ships .bmp, other sets .tif/.tiff: found in any case below the root, decoded by the one decoder."""
    import numpy as np
    from PIL import Image
    from skinlesion.data.images import load_rgb
    from skinlesion.data.metadata import find_images
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    (tmp_path / "sub").mkdir()
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "sub" / "b.BMP")
    Image.fromarray(arr).save(tmp_path / "c.tif")
    Image.fromarray(arr).save(tmp_path / "d.TIFF")
    found = find_images(tmp_path)
    assert set(found) == {"a", "b", "c", "d"}
    for k in found:
        assert np.array_equal(np.asarray(load_rgb(found[k])), arr), k
