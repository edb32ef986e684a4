"""`ShardDataset`: a map-style torch Dataset over a folder of shards.

Its length and classes come from the manifest, so creating it opens no shard. HDF5 handles are
opened lazily in whichever process reads (a DataLoader worker after fork or spawn) and never
pickled: h5py objects cannot cross processes.
"""

from __future__ import annotations

import bisect
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import FlowprepError
from ..files import file_sha256
from ..shards.manifest import Manifest
from ..shards.reader import ShardFile


class ShardDataset(Dataset):
    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        streams: Sequence[str] = ("gray", "flow"),
        transform: Callable[[dict], dict] | None = None,
        max_open: int = 8,
        flow_dtype: str = "float32",
        check_sha256: bool = False,
        allow_incomplete: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FlowprepError(f"{self.root} is not a folder of shards")
        self.manifest = Manifest.load(self.root)
        if not allow_incomplete:  # a half-built folder would train on a part of the data without a word
            self.manifest.require_complete(self.root, "allow_incomplete=True")
        self.split = split
        self.streams = tuple(streams)
        self.transform = transform
        self.max_open = max_open
        self.flow_dtype = flow_dtype  # "float32" | "float16" pixels, or "stored" integers (see ShardFile.clip)
        self.check_sha256 = check_sha256  # hash each shard once per process before its first read
        if "audio" in self.streams and not self.manifest.config.get("audio"):
            raise FlowprepError(f"{self.root} was built without audio: rebuild with `flowprep build --audio` "
                                f"to read the 'audio' stream")
        self.shards = [s for s in self.manifest.shards if s.split == split and s.clips > 0]
        if not self.shards:
            have = sorted(self.manifest.splits()) or ["none"]
            raise FlowprepError(f"split {split!r} not in {self.root} (splits: {', '.join(have)})")
        self._starts = []
        total = 0
        for s in self.shards:
            self._starts.append(total)
            total += s.clips
        self._len = total
        self._handles: OrderedDict[str, ShardFile] = OrderedDict()
        self._pid = os.getpid()

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def open_shards(self) -> list[str]:
        """The shard files this process holds open, least recently read first (at most ``max_open``)."""
        return list(self._handles)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        classes = len(self.manifest.classes)
        flow = f" (flow {self.flow_dtype})" if "flow" in self.streams else ""
        head = (f"ShardDataset({str(self.root)!r}, split={self.split!r}: {self._len} clips in {len(self.shards)} "
                f"shard(s), {classes if classes else 'no'} classes{'' if classes else ' (unlabelled)'})")
        tail = f"  streams: {', '.join(self.streams)}{flow}"
        if self.transform is not None:
            tail += f"; transform: {self.transform!r}"
        return f"{head}\n{tail}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range ({self._len} clips)")
        k = bisect.bisect_right(self._starts, index) - 1
        shard = self._open(self.shards[k].name)
        sample = shard.clip(index - self._starts[k], self.streams, self.flow_dtype)
        for key in self.streams:
            sample[key] = torch.from_numpy(sample[key])
        sample["boundary"] = torch.from_numpy(sample["boundary"])
        sample.setdefault("text", "")  # what is said (GRID, LRS2/LRS3); "" when the source does not say
        # [(word, start_s, end_s), ...] from the shard's JSON word_times; [] when unknown
        sample["words"] = [(str(w), float(a), float(z)) for w, a, z in json.loads(sample.get("word_times") or "[]")]
        return self.transform(sample) if self.transform else sample

    def _open(self, name: str) -> ShardFile:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._handles = OrderedDict()
            self._pid = os.getpid()
        handle = self._handles.get(name)
        if handle is None:
            path = self.root / name
            if self.check_sha256:
                expected = next(s.sha256 for s in self.shards if s.name == name)
                if file_sha256(path) != expected:
                    raise FlowprepError(f"{path} fails its sha256 check against manifest.json: it was modified or "
                                        f"corrupted; run `flowprep verify {self.root}` and rebuild it")
            handle = ShardFile(path)
            self._handles[name] = handle
            while len(self._handles) > self.max_open:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(name)
        return handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def __del__(self) -> None:
        for handle in getattr(self, "_handles", {}).values():
            try:
                handle.close()
            except Exception:
                pass
