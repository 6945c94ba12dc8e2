"""A stand-in for the Hugging Face Hub on 127.0.0.1: the few endpoints huggingface_hub uses to create a repo
and a branch, commit files (regular uploads, no LFS) and download them (revision info, HEAD/GET resolve).
Enough for `skinlesion push`, ``--model hf-hub:...`` and ``timm.create_model("hf-hub:...")``; never the real Hub."""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubState:
    def __init__(self):
        self.repos: dict[str, dict[str, dict]] = {}  # repo -> branch -> {"sha", "files": {path: bytes}}
        self.commits: dict[str, dict[str, bytes]] = {}  # sha -> files
        self.lock = threading.Lock()

    def commit(self, repo: str, branch: str, files: dict[str, bytes]) -> str:
        with self.lock:
            current = dict(self.repos[repo].get(branch, {}).get("files", {}))
            current.update(files)
            sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in current.items()))
                               .encode() + repo.encode() + branch.encode()).hexdigest()
            self.repos[repo][branch] = {"sha": sha, "files": current}
            self.commits[sha] = current
            return sha

    def files_at(self, repo: str, revision: str):
        branches = self.repos.get(repo)
        if branches is None:
            return None, None
        if revision in branches:
            return branches[revision]["sha"], branches[revision]["files"]
        if revision in self.commits:
            return revision, self.commits[revision]
        return "", None


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, code: int, obj, headers: dict | None = None):
            self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _missing(self, kind: str):
            self._json(404, {"error": kind}, {"X-Error-Code": kind, "X-Error-Message": kind})

        def do_POST(self):
            path = unquote(urlparse(self.path).path)
            body = self._body()
            if path == "/api/repos/create":
                req = json.loads(body or b"{}")
                repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                with state.lock:
                    state.repos.setdefault(repo, {})
                if "main" not in state.repos[repo]:
                    state.commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs\n"})
                return self._json(200, {"url": f"http://{self.headers['Host']}/{repo}"})
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            parts = path.split("/")
            if path.startswith("/api/models/") and len(parts) >= 7:
                repo, action, branch = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
                if repo not in state.repos:
                    return self._missing("RepoNotFound")
                if action == "branch":
                    state.commit(repo, branch, dict(state.repos[repo]["main"]["files"]))
                    return self._json(200, {})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if action == "commit":
                    files = {}
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    sha = state.commit(repo, branch, files)
                    return self._json(200, {"success": True, "commitOid": sha,
                                            "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{sha}"})
            self._json(404, {"error": f"no route {path}"})

        def _get(self, head: bool):
            path = unquote(urlparse(self.path).path)
            parts = path.split("/")
            if path.startswith("/api/models/") and "tree" in parts:  # list_repo_tree (recursive, one page)
                i = parts.index("tree")
                repo, revision = "/".join(parts[3:i]), parts[i + 1]
                sha, files = state.files_at(repo, revision)
                if sha is None:
                    return self._missing("RepoNotFound")
                if files is None:
                    return self._missing("RevisionNotFound")
                folders = sorted({"/".join(f.split("/")[:k]) for f in files for k in range(1, f.count("/") + 1)})
                return self._json(200, [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in folders]
                                  + [{"type": "file", "path": f, "size": len(files[f]),
                                      "oid": hashlib.sha1(files[f]).hexdigest()} for f in sorted(files)])
            if path.startswith("/api/models/") and "revision" in parts:
                i = parts.index("revision")
                repo, revision = "/".join(parts[3:i]), "/".join(parts[i + 1:])
                sha, files = state.files_at(repo, revision)
                if sha is None:
                    return self._missing("RepoNotFound")
                if files is None:
                    return self._missing("RevisionNotFound")
                return self._json(200, {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                        "siblings": [{"rfilename": f} for f in sorted(files)]})
            if "resolve" in parts:
                i = parts.index("resolve")
                repo, revision, fname = "/".join(parts[1:i]), parts[i + 1], "/".join(parts[i + 2:])
                sha, files = state.files_at(repo, revision)
                if sha is None:
                    return self._missing("RepoNotFound")
                if files is None:
                    return self._missing("RevisionNotFound")
                if fname not in files:
                    return self._missing("EntryNotFound")
                data = files[fname]
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                return self._send(200, data, {"X-Repo-Commit": sha, "ETag": etag,
                                              "Content-Type": "application/octet-stream"}, head=head)
            self._json(404, {"error": f"no route {path}"})

        def do_GET(self):
            self._get(head=False)

        def do_HEAD(self):
            self._get(head=True)

    return Handler


class HubStandIn:
    """``with HubStandIn() as hub: hub.url``: a threaded server on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self):
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
