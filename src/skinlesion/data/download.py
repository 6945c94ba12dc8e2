"""`skinlesion download NAME --out DIR`: public dermoscopy datasets fetched from where their authors publish
them, resumable (HTTP Range), checksum-verified, extracted into a layout `prepare` reads.

- ``ham10000``: Harvard Dataverse, doi:10.7910/DVN/DBW86T. The file list, ids, sizes and MD5 checksums
  are read from Dataverse's dataset API (nothing hard-coded but the DOI); the metadata table is fetched
  as originally deposited (``format=original``: CSV, not Dataverse's .tab).
- ``isic2018-val`` / ``isic2018-test``: ISIC 2018 Task 3 validation / test inputs with ground truth from
  the ISIC challenge's public archive. The archive publishes no checksum list: the size is checked
  against Content-Length and the MD5 against the ETag where the ETag is a plain MD5 (single-part upload);
  otherwise the SHA-256 is recorded in CHECKSUMS.txt and the output says the file was not verified.
Base URLs can be pointed at a mirror with ``SKINLESION_DATAVERSE_URL`` / ``SKINLESION_ISIC_URL``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import console
from ..errors import SkinlesionError

TIMEOUT_S = 30
CHUNK = 1 << 20
HAM_DOI = "doi:10.7910/DVN/DBW86T"
HAM_CITATION = ("Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
                "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). "
                "https://doi.org/10.7910/DVN/DBW86T")
ISIC2018_CITATION = ("Codella N. et al. Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge Hosted by "
                     "the International Skin Imaging Collaboration (ISIC). arXiv:1902.03368; and " + HAM_CITATION)
LICENCE = "CC BY-NC 4.0 (attribution, non-commercial)"


class DownloadError(SkinlesionError, RuntimeError):
    """A transfer or a check failed; the message names the URL and the manual steps."""


class _Oversize(Exception):
    """A stream ran past the size its listing or Content-Length announced."""


#: Zip bombs: an archive may unpack to at most this many times its own size, and never to more than the free
#: disk space less a margin (dermoscopy JPEGs barely compress: HAM10000's zips unpack at about 1:1).
MAX_ZIP_RATIO = 20
DISK_MARGIN_BYTES = 1 << 30


@dataclass
class RemoteFile:
    name: str
    url: str
    size: int | None = None
    md5: str | None = None
    extract: bool = False  # a zip to unpack into the output folder
    rename: str | None = None  # save under this name in the output folder (not extracted)


@dataclass(frozen=True)
class Source:
    name: str
    landing: str
    citation: str
    manual: str  # what to do by hand


SOURCES = {
    "ham10000": Source("ham10000", "https://doi.org/10.7910/DVN/DBW86T", HAM_CITATION,
                       "download HAM10000_images_part_1.zip, HAM10000_images_part_2.zip and HAM10000_metadata (as the "
                       "original .csv) from https://doi.org/10.7910/DVN/DBW86T, unzip the images into OUT/images/ and "
                       "save the table as OUT/HAM10000_metadata.csv"),
    "isic2018-val": Source("isic2018-val", "https://challenge.isic-archive.com/data/#2018", ISIC2018_CITATION,
                           "download ISIC2018_Task3_Validation_Input.zip and ISIC2018_Task3_Validation_GroundTruth.zip "
                           "from https://challenge.isic-archive.com/data/#2018 and unzip both into OUT"),
    "isic2018-test": Source("isic2018-test", "https://challenge.isic-archive.com/data/#2018", ISIC2018_CITATION,
                            "download ISIC2018_Task3_Test_Input.zip and ISIC2018_Task3_Test_GroundTruth.zip from "
                            "https://challenge.isic-archive.com/data/#2018 and unzip both into OUT"),
}


def _dataverse() -> str:
    return os.environ.get("SKINLESION_DATAVERSE_URL", "https://dataverse.harvard.edu").rstrip("/")


def _isic() -> str:
    return os.environ.get("SKINLESION_ISIC_URL", "https://isic-challenge-data.s3.amazonaws.com").rstrip("/")


def _open(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers={"User-Agent": "skinlesion", **(headers or {})})
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - https/http URLs of known sources


def ham10000_files(source: Source) -> list[RemoteFile]:
    """The image zips and the metadata table, from Dataverse's dataset API (ids, sizes, MD5s)."""
    api = f"{_dataverse()}/api/datasets/:persistentId/?persistentId={HAM_DOI}"
    try:
        with _open(api) as r:
            listing = json.loads(r.read().decode("utf-8"))
        files = listing["data"]["latestVersion"]["files"]
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot read the file list at {api} ({getattr(exc, 'reason', exc)}). Remedy: check the "
                            f"connection and run again, or by hand: {source.manual}.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"{api} did not return a Dataverse dataset listing ({exc}). Remedy: by hand: "
                            f"{source.manual}.") from None
    out = []
    for f in files:
        d = f.get("dataFile", {})
        name = d.get("originalFileName") or d.get("filename", "")
        checksum = d.get("checksum") or {}
        md5 = checksum.get("value") if str(checksum.get("type", "")).upper() == "MD5" else d.get("md5")
        url = f"{_dataverse()}/api/access/datafile/{d.get('id')}"
        if name.startswith("HAM10000_images_part_") and name.endswith(".zip"):
            out.append(RemoteFile(name, url, d.get("filesize"), md5, extract=True))
        elif name.startswith("HAM10000_metadata"):
            original = "originalFileName" in d
            out.append(RemoteFile(name, url + ("?format=original" if original else ""),
                                  d.get("originalFileSize") if original else d.get("filesize"), md5,
                                  rename="HAM10000_metadata.csv"))
    if not any(f.extract for f in out) or not any(f.rename for f in out):
        raise DownloadError(f"{api} lists no HAM10000 image zips or metadata table ({len(files)} files). Remedy: by "
                            f"hand: {source.manual}.")
    return out


def isic2018_files(split: str) -> list[RemoteFile]:
    base = f"{_isic()}/2018"
    return [RemoteFile(f"ISIC2018_Task3_{split}_{part}.zip", f"{base}/ISIC2018_Task3_{split}_{part}.zip", extract=True)
            for part in ("Input", "GroundTruth")]


def fetch(f: RemoteFile, partial_dir: Path, source: Source, progress: bool = True) -> tuple[Path, str]:
    """Download ``f`` into ``partial_dir`` (resuming a ``.part`` left by an interrupted run) and verify it.
    Returns the finished file and how it was verified."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    part, done = partial_dir / (f.name + ".part"), partial_dir / f.name
    if done.is_file():
        return done, "verified earlier"
    have = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(f.url, {"Range": f"bytes={have}-"} if have else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            resp = None
        else:
            raise DownloadError(f"{f.url}: HTTP {exc.code} {exc.reason}. Remedy: by hand: {source.manual}.") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot reach {f.url} ({getattr(exc, 'reason', exc)}); {have} bytes kept in {part} for "
                            f"a later resume. Remedy: run the same command again when online, or by hand: "
                            f"{source.manual}.") from None
    etag = None
    if resp is not None:
        with resp:
            etag = (resp.headers.get("ETag") or "").strip('"') or None
            if resp.status == 200 and have:  # the server ignored the Range: start again
                have = 0
            length = resp.headers.get("Content-Length")
            total = f.size or ((have + int(length)) if length else None)
            mode = "ab" if have else "wb"
            try:
                with open(part, mode) as out, console.bar(total=total, initial=have, unit="B", unit_scale=True,
                                                    desc=f.name, disable=not progress) as bar:
                    written = have
                    while chunk := resp.read(CHUNK):
                        written += len(chunk)
                        if total is not None and written > total:  # never write past the announced size
                            raise _Oversize(written)
                        out.write(chunk)
                        bar.update(len(chunk))
            except _Oversize as exc:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{f.url}: the server sent more than the expected {total} bytes ({exc.args[0]} "
                                    "so far); the transfer was stopped and the file deleted. Remedy: run the same "
                                    f"command again; if it repeats, download by hand: {source.manual}.") from None
            except (urllib.error.URLError, OSError, ConnectionError) as exc:
                raise DownloadError(f"the transfer of {f.url} broke off ({exc}); {part.stat().st_size} bytes kept. "
                                    "Remedy: run the same command again to resume.") from None
            if f.size is None and total is not None:
                f.size = total
    size = part.stat().st_size
    if f.size is not None and size > f.size:
        part.unlink()
        raise DownloadError(f"{f.url}: got {size} bytes, more than the expected {f.size}; the file was deleted. "
                            "Remedy: run the same command again.")
    if f.size is not None and size != f.size:
        raise DownloadError(f"{f.url}: got {size} bytes, expected {f.size}; {part} kept for a resume. Remedy: run the "
                            "same command again to resume.")
    md5 = f.md5 or (etag if etag and len(etag) == 32 and "-" not in etag else None)
    digest = _digest(part, "md5" if md5 else "sha256")
    if md5 and digest != md5.lower():
        part.unlink()
        raise DownloadError(f"{f.url}: MD5 {digest} does not match the published {md5}; the damaged file was "
                            f"deleted. Remedy: run the command again; if it repeats, download by hand: {source.manual}.")
    os.replace(part, done)
    return done, f"MD5 {digest} verified" if md5 else f"not verifiable (no published checksum); SHA-256 {digest}"


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def extract(archive: Path, into: Path) -> int:
    """Unpack a zip into ``into`` (refusing members that would land outside it); returns the file count."""
    root = into.resolve()
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            limit = min(MAX_ZIP_RATIO * max(archive.stat().st_size, 1 << 20),
                        shutil.disk_usage(into if into.exists() else into.parent).free - DISK_MARGIN_BYTES)
            if total > limit:
                raise DownloadError(f"{archive}: its {len(members)} members would unpack to {total:,} bytes, more than "
                                    f"{MAX_ZIP_RATIO}x the archive or the free disk space allows ({max(limit, 0):,}); "
                                    "refused (a zip bomb, or too little disk). Remedy: free disk space, or check the "
                                    "archive's source.")
            for m in members:
                target = (root / m.filename).resolve()
                if root not in target.parents:
                    raise DownloadError(f"{archive}: member {m.filename!r} would be written outside {into}; refused.")
            tmp = into / f".extract-{archive.stem}"
            shutil.rmtree(tmp, ignore_errors=True)
            for m in members:  # stream each member, stopping at its declared size (a lying header)
                dest = tmp / m.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as src, open(dest, "wb") as out_f:
                    left = m.file_size
                    while chunk := src.read(min(CHUNK, left + 1) or 1):
                        left -= len(chunk)
                        if left < 0:
                            raise DownloadError(f"{archive}: member {m.filename!r} unpacks past its declared size "
                                                f"{m.file_size:,}; refused. Remedy: check the archive's source.")
                        out_f.write(chunk)
    except DownloadError:
        shutil.rmtree(into / f".extract-{archive.stem}", ignore_errors=True)
        raise
    except zipfile.BadZipFile as exc:
        shutil.rmtree(into / f".extract-{archive.stem}", ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive} is not a valid zip ({exc}); deleted. Remedy: run the command again.") from None
    for item in tmp.rglob("*"):
        if item.is_file():
            dest = into / item.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return len(members)


def download(name: str, out: str | Path, progress: bool = True, echo=print) -> Path:
    """Fetch, verify and unpack dataset ``name`` into ``out``; print the licence and citation."""
    if name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}. Remedy: one of {', '.join(SOURCES)}")
    source, out = SOURCES[name], Path(out)
    files = ham10000_files(source) if name == "ham10000" else \
        isic2018_files("Validation" if name == "isic2018-val" else "Test")
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".downloads"
    lines = []
    for f in files:
        path, how = fetch(f, partial, source, progress)
        echo(f"{f.name}: {how}")
        lines.append(f"{f.name}  {how}  {f.url}")
        if f.extract:
            n = extract(path, out / "images" if name == "ham10000" else out)
            echo(f"  unpacked {n} file(s)")
        elif f.rename:
            shutil.copyfile(path, out / f.rename)
    (out / "CHECKSUMS.txt").write_text("\n".join(lines) + "\n")
    (out / "LICENSE-AND-CITATION.txt").write_text(f"Licence: {LICENCE}\nCite: {source.citation}\nSource: {source.landing}\n")
    echo(f"licence: {LICENCE}\ncite: {source.citation}\nready: skinlesion prepare --data {out} --out RUN_DIR")
    return out
