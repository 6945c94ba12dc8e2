"""FastAPI app and its one static page."""
