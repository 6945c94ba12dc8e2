"""`download` against a local HTTP server on 127.0.0.1 with small fixture archives: a complete download,
a resumed interrupted one, a checksum mismatch, a missing file, no connection. Never leaves the loopback."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinlesion.cli import main
from skinlesion.data.download import DownloadError, download
from skinlesion.data.dataset import load_dataset


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (12, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


class Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut`` (path -> bytes) ends the first response
    for that path after that many bytes; ``log`` records (path, Range header)."""

    def __init__(self):
        self.files, self.cut, self.log = {}, {}, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path
                outer.log.append((path, self.headers.get("Range")))
                data = outer.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"' + hashlib.md5(data).hexdigest() + '"')
                self.end_headers()
                if path in outer.cut:
                    self.wfile.write(body[:outer.cut.pop(path)])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the transfer breaks off
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(monkeypatch):
    s = Server()
    monkeypatch.setenv("SKINLESION_DATAVERSE_URL", s.url)
    monkeypatch.setenv("SKINLESION_ISIC_URL", s.url)
    monkeypatch.setattr("skinlesion.data.download.TIMEOUT_S", 5)
    yield s
    s.httpd.shutdown()


def dataverse_fixture(server, md5_override=None):
    """A HAM10000-like Dataverse dataset: two image zips and the metadata (tabular, fetched as original)."""
    ids = [f"ISIC_{i:07d}" for i in range(8)]
    zips = [_zip({f"{i}.jpg": _jpeg(k) for k, i in enumerate(ids[:4])}),
            _zip({f"{i}.jpg": _jpeg(k + 4) for k, i in enumerate(ids[4:], 4)})]
    meta = pd.DataFrame({"lesion_id": [f"HAM_{i}" for i in range(8)], "image_id": ids,
                         "dx": ["mel", "nv"] * 4, "dx_type": "histo", "age": 50, "sex": "male",
                         "localization": "back"}).to_csv(index=False).encode()
    files = [(11, "HAM10000_images_part_1.zip", zips[0], {}), (12, "HAM10000_images_part_2.zip", zips[1], {}),
             (13, "HAM10000_metadata.tab", b"tab version", {"originalFileName": "HAM10000_metadata.csv",
                                                            "originalFileSize": len(meta)}),
             (14, "ISIC2018_Task3_Test_GroundTruth.tab", b"other", {})]
    listing = {"status": "OK", "data": {"latestVersion": {"files": []}}}
    for fid, name, data, extra in files:
        real = meta if extra.get("originalFileName") else data
        md5 = hashlib.md5(real).hexdigest() if not (md5_override and name in md5_override) else md5_override[name]
        listing["data"]["latestVersion"]["files"].append(
            {"label": name, "dataFile": {"id": fid, "filename": name, "filesize": len(data),
                                         "checksum": {"type": "MD5", "value": md5}, **extra}})
        server.files[f"/api/access/datafile/{fid}"] = data
    server.files["/api/access/datafile/13?format=original"] = meta
    server.files["/api/datasets/:persistentId/?persistentId=doi:10.7910/DVN/DBW86T"] = json.dumps(listing).encode()
    return zips, meta


def test_complete_ham10000_download_is_verified_and_prepare_ready(server, tmp_path, capsys):
    dataverse_fixture(server)
    assert main(["download", "ham10000", "--out", str(tmp_path / "ham"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == 3 and "CC BY-NC 4.0" in out and "10.7910/DVN/DBW86T" in out
    ds = load_dataset(tmp_path / "ham", progress=False)
    assert len(ds.frame) == 8 and ds.table.format == "ham10000"
    assert not list((tmp_path / "ham" / ".downloads").glob("*.part"))
    # the file list came from the API, the table as originally deposited, the other file untouched
    paths = [p for p, _ in server.log]
    assert "/api/access/datafile/13?format=original" in paths and "/api/access/datafile/14" not in paths


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    zips, _ = dataverse_fixture(server)
    server.cut["/api/access/datafile/12"] = len(zips[1]) // 2
    with pytest.raises(DownloadError, match=r"(broke off|got \d+ bytes, expected).*run the same command again"):
        download("ham10000", tmp_path / "ham", progress=False, echo=lambda *a: None)
    part = tmp_path / "ham" / ".downloads" / "HAM10000_images_part_2.zip.part"
    assert part.is_file() and 0 < part.stat().st_size < len(zips[1])
    kept = part.stat().st_size
    download("ham10000", tmp_path / "ham", progress=False, echo=lambda *a: None)
    assert ("/api/access/datafile/12", f"bytes={kept}-") in server.log
    assert (tmp_path / "ham" / ".downloads" / "HAM10000_images_part_2.zip").read_bytes() == zips[1]
    assert len(load_dataset(tmp_path / "ham", progress=False).frame) == 8


def test_checksum_mismatch_deletes_the_file_and_says_so(server, tmp_path):
    dataverse_fixture(server, md5_override={"HAM10000_images_part_1.zip": "0" * 32})
    with pytest.raises(DownloadError, match=r"MD5 [0-9a-f]{32} does not match the published 0{32}.*deleted"):
        download("ham10000", tmp_path / "ham", progress=False, echo=lambda *a: None)
    assert not list((tmp_path / "ham" / ".downloads").glob("HAM10000_images_part_1*"))


def test_missing_file_and_no_connection_name_the_url_and_manual_steps(server, tmp_path, capsys):
    # ISIC 2018 test: the input zip is there, the ground truth is missing (404)
    server.files["/2018/ISIC2018_Task3_Test_Input.zip"] = _zip({"ISIC2018_Task3_Test_Input/ISIC_0034524.jpg": _jpeg(1)})
    assert main(["download", "isic2018-test", "--out", str(tmp_path / "t"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "/2018/ISIC2018_Task3_Test_GroundTruth.zip: HTTP 404" in err and "challenge.isic-archive.com" in err
    # the input zip was verified by its ETag and is kept: a rerun fetches only what is missing
    gt = _zip({"ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv":
               b"image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_0034524,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"})
    server.files["/2018/ISIC2018_Task3_Test_GroundTruth.zip"] = gt
    n_before = len(server.log)
    assert main(["download", "isic2018-test", "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert [p for p, _ in server.log[n_before:]] == ["/2018/ISIC2018_Task3_Test_GroundTruth.zip"]
    ds = load_dataset(tmp_path / "t", progress=False)
    assert ds.table.format == "isic" and list(ds.frame["dx"]) == ["nv"]
    # nothing listening: a clear error with the URL and the manual route, exit 2
    server.httpd.shutdown()
    server.httpd.server_close()
    assert main(["download", "ham10000", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot read the file list at http://127.0.0.1" in err and "doi.org/10.7910/DVN/DBW86T" in err


def test_a_zip_member_outside_the_folder_is_refused(server, tmp_path):
    server.files["/2018/ISIC2018_Task3_Validation_Input.zip"] = _zip({"../evil.txt": b"x"})
    server.files["/2018/ISIC2018_Task3_Validation_GroundTruth.zip"] = _zip({"a.csv": b"x"})
    with pytest.raises(DownloadError, match="outside"):
        download("isic2018-val", tmp_path / "v", progress=False, echo=lambda *a: None)
    assert not (tmp_path / "evil.txt").exists()
