"""FastAPI service: health, model info, prediction (+ Grad-CAM) and one static HTML page."""
from __future__ import annotations

import base64
import copy
import io
import json
import threading
from importlib import resources
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse

from ..data.images import ImageDecodeError, load_rgb
from ..inference.predictor import Predictor
from ..evaluation.report import LIMITATIONS, NOTICE

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


STATUS_FOR_KIND = {"not_image": 415, "too_large": 413, "bad_shape": 422, "corrupt": 422, "missing": 422}
MULTIPART_OVERHEAD = 64 * 1024


def _status_for(exc: ImageDecodeError) -> int:
    return STATUS_FOR_KIND.get(getattr(exc, "kind", "corrupt"), 422)


class BodyLimit:
    """ASGI middleware: the upload limit holds while the body is received, with or without a
    Content-Length (chunked uploads are counted as they arrive and cut off with 413 at the limit)."""

    def __init__(self, app, limit: int, paths: tuple[str, ...] = ("/api/predict",)):
        self.app, self.limit, self.paths = app, limit, paths

    async def _reject(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        too_big = f"upload larger than {self.limit / (1024 * 1024):g} MB (plus {MULTIPART_OVERHEAD // 1024} KB of form overhead)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await self._reject(send, 400, "invalid Content-Length header")
            if int(length) > self.limit + MULTIPART_OVERHEAD:
                return await self._reject(send, 413, too_big)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit + MULTIPART_OVERHEAD:
                return await self._reject(send, 413, too_big)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)


#: Uploads decoded at the same time (each up to 50 MP, ~150 MB as RGB): bounds the server's peak memory under
#: a burst of large images to about DECODE_SLOTS x 0.3 GB; further requests wait their turn.
DECODE_SLOTS = 2
LARGE_IMAGE_PIXELS = 4_000_000


def _release_memory() -> None:
    """Hand freed decoder buffers back to the OS (glibc keeps them in its arenas otherwise)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def create_app(bundle_dir: str | Path, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The app for one bundle; the model is loaded here, once."""
    predictor = Predictor.from_bundle(bundle_dir)
    config = predictor.bundle.config
    # Grad-CAM registers hooks on the model it explains: it gets its own copy, so plain predictions
    # (on the shared model, any number at once) never pass through its hooks; explain requests take turns.
    explain_lock = threading.Lock()
    decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
    explain_bundle: list = []
    app = FastAPI(title="skinlesion", version=str(config.get("library_versions", {}).get("skinlesion")),
                  description=f"Dermoscopic skin-lesion classifier ({config['architecture']}). {NOTICE}")
    app.add_middleware(BodyLimit, limit=max_upload_bytes)

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": config["architecture"]}

    @app.get("/api/model")
    def model_info() -> dict:
        keys = ("architecture", "timm_id", "task", "class_names", "preprocessing", "threshold", "metrics",
                "calibration", "library_versions", "intended_use", "metadata", "recipe")
        return {k: config.get(k) for k in keys} | {"decision_threshold": predictor.threshold, "notice": NOTICE,
                                                   "limitations": LIMITATIONS, "ensemble": config.get("ensemble")}

    @app.post("/api/predict")
    def predict(file: UploadFile = File(...), explain: bool = False, age: float | None = Form(None, ge=0, le=120),
                sex: str | None = Form(None, max_length=32), site: str | None = Form(None, max_length=64)) -> dict:
        """Probability of malignancy for one image; ``age``, ``sex`` and ``site`` (anatomical site) are
        optional and used only by models trained with metadata (any may be left out)."""
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes // (1024 * 1024)} MB")
        try:
            with decode_slots:  # each image is bounded (50 MP); this bounds how many decode at once
                image = load_rgb(io.BytesIO(data), name=file.filename or "upload")
                pixels = image.size[0] * image.size[1]
                square = predictor.square(image)
                del image, data
                if pixels > LARGE_IMAGE_PIXELS:
                    _release_memory()
        except ImageDecodeError as exc:
            raise HTTPException(_status_for(exc), str(exc)) from None
        meta = pd.DataFrame([{"age": age, "sex": sex, "localization": site}])
        row = predictor.to_frame(*predictor.predict_squares(square[None], meta)).iloc[0]
        result = {"filename": file.filename, "probability": float(row["probability"]), "decision": row["decision"],
                  "threshold": float(row["threshold"]), "architecture": config["architecture"], "notice": NOTICE}
        result |= {k: float(v) for k, v in row.items() if k.startswith("p_")}
        if explain:
            from ..inference.gradcam import gradcam, overlay
            with explain_lock:
                if not explain_bundle:
                    explain_bundle.append(copy.deepcopy(predictor.bundle))
                maps, rgb = gradcam(explain_bundle[0], square[None])
            buf = io.BytesIO()
            overlay(rgb[0], maps[0]).save(buf, format="PNG")
            result["gradcam_png_base64"] = base64.b64encode(buf.getvalue()).decode()
        return result

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return resources.files("skinlesion.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    return app


def serve(bundle_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 10) -> None:
    """Run the app with uvicorn (localhost by default)."""
    import uvicorn
    uvicorn.run(create_app(bundle_dir, int(max_upload_mb * 1024 * 1024)), host=host, port=port, log_level="info")
