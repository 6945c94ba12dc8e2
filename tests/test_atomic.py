import pytest

from skinlesion import atomic


def test_failed_write_leaves_target_untouched_and_no_temp_files(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_temp_file_keeps_suffix_and_lives_beside_target(tmp_path):
    with atomic.atomic_path(tmp_path / "sub" / "plot.png") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.suffix == ".png"
        tmp.write_bytes(b"x")
    assert (tmp_path / "sub" / "plot.png").read_bytes() == b"x"
