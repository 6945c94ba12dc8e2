"""A JSON file's content as a read-only mapping: the base of the typed, validated files (a bundle's
config.json, an evaluation's metrics.json). Readers keep every stored key; changes go through ``to_json()``
(a deep copy) and the type's own ``from_json`` validation."""
from __future__ import annotations

import copy
from collections.abc import Mapping


class JsonRecord(Mapping):
    def __init__(self, data: dict):
        self._data = copy.deepcopy(dict(data))

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_json(self) -> dict:
        """A plain (deep-copied) dict to change and write."""
        return copy.deepcopy(self._data)
