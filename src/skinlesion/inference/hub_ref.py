"""``hf-hub:ORG/NAME[@revision]`` references: parsed, downloaded into the Hub cache (only the bundle folder,
``skinlesion/``), returned as a local bundle folder. `inference.bundle.load_bundle` and the CLI's ``--model``
resolve through here; `inference.hub` pushes."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import SkinlesionError

PREFIX = "hf-hub:"
BUNDLE_DIR = "skinlesion"
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class HubError(SkinlesionError):
    """A Hub reference that cannot be resolved or a push that cannot be made (message has the remedy)."""


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``hf-hub:ORG/NAME[@revision]`` -> (repo id, revision or None)."""
    body = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    repo, _, revision = body.partition("@")
    if not _REPO.match(repo) or (ref.count("@") and not revision):
        raise HubError(f"{ref!r} is not a Hub model reference. Remedy: hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION "
                       "(a branch, tag or commit).")
    return repo, revision or None


def is_hub_ref(model) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def resolve(model) -> Path:
    """A local bundle folder for ``model``: itself, or for ``hf-hub:`` the bundle downloaded to the Hub cache
    (offline with ``HF_HUB_OFFLINE=1``: from the cache only)."""
    if not is_hub_ref(model):
        return Path(model)
    repo, revision = parse_ref(model)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    try:
        local = Path(snapshot_download(repo, revision=revision, allow_patterns=[f"{BUNDLE_DIR}/*"]))
    except (RepositoryNotFoundError, GatedRepoError):
        raise HubError(f"{model}: no such model repo on the Hub, or no access to it. Remedy: check ORG/NAME, and log "
                       "in (HF_TOKEN or `huggingface-cli login`) for a private repo.") from None
    except RevisionNotFoundError:
        raise HubError(f"{model}: the repo has no revision {revision!r}. Remedy: a branch, tag or commit it has "
                       "(or drop @REVISION for main).") from None
    except LocalEntryNotFoundError as exc:
        raise HubError(f"{model}: not in the Hub cache, and not downloaded ({str(exc).splitlines()[0][:160]}; "
                       "HF_HUB_OFFLINE set, or no network). Remedy: go online once to download it, or pass a local "
                       "bundle folder.") from None
    except OSError as exc:  # HTTP errors (huggingface_hub's HfHubHTTPError is one) and the network's
        raise HubError(f"{model}: the Hub did not answer ({str(exc).splitlines()[0][:200]}). Remedy: check the "
                       "network and HF_ENDPOINT, then try again.") from None
    bundle = local / BUNDLE_DIR
    if not (bundle / "config.json").is_file():
        raise HubError(f"{model}: the repo holds no skinlesion bundle ({BUNDLE_DIR}/config.json is missing). Remedy: "
                       "push one with `skinlesion push --model BUNDLE --repo ORG/NAME`, or use a local bundle.")
    return bundle
