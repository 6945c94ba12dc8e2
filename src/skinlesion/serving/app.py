"""FastAPI service: health, model info, prediction (+ Grad-CAM) and one static HTML page."""
from __future__ import annotations

import base64
import io
import threading
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from ..data.images import ImageDecodeError, load_rgb
from ..inference.predictor import Predictor
from ..evaluation.report import NOTICE

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def _status_for(exc: ImageDecodeError) -> int:
    text = str(exc)
    if "not an image" in text:
        return 415
    if "exceeds the limit" in text or "decompression bomb" in text:
        return 413
    return 422


def create_app(bundle_dir: str | Path, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The app for one bundle; the model is loaded here, once."""
    predictor = Predictor.from_bundle(bundle_dir)
    config = predictor.bundle.config
    explain_lock = threading.Lock()  # Grad-CAM registers hooks on the shared model
    app = FastAPI(title="skinlesion", version=str(config.get("library_versions", {}).get("skinlesion")),
                  description=f"Dermoscopic skin-lesion classifier ({config['architecture']}). {NOTICE}")

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.url.path == "/api/predict" and length and length.isdigit() and int(length) > max_upload_bytes + 64 * 1024:
            return JSONResponse({"detail": f"upload larger than {max_upload_bytes // (1024 * 1024)} MB"}, status_code=413)
        return await call_next(request)

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": config["architecture"]}

    @app.get("/api/model")
    def model_info() -> dict:
        keys = ("architecture", "timm_id", "task", "class_names", "preprocessing", "threshold", "metrics",
                "calibration", "training_data", "library_versions", "intended_use")
        return {k: config.get(k) for k in keys} | {"decision_threshold": predictor.threshold, "notice": NOTICE}

    @app.post("/api/predict")
    def predict(file: UploadFile = File(...), explain: bool = False) -> dict:
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes // (1024 * 1024)} MB")
        try:
            image = load_rgb(io.BytesIO(data), name=file.filename or "upload")
        except ImageDecodeError as exc:
            raise HTTPException(_status_for(exc), str(exc)) from None
        square = predictor.square(image)
        row = predictor.to_frame(*predictor.predict_squares(square[None])).iloc[0]
        result = {"filename": file.filename, "probability": float(row["probability"]), "decision": row["decision"],
                  "threshold": float(row["threshold"]), "architecture": config["architecture"], "notice": NOTICE}
        result |= {k: float(v) for k, v in row.items() if k.startswith("p_")}
        if explain:
            from ..inference.gradcam import gradcam, overlay
            with explain_lock:
                maps, rgb = gradcam(predictor.bundle, square[None])
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
