"""Read a W&B offline transaction log (``run-*.wandb``) into protobuf records, to check what a real run stored.

The file is W&B's header (``:W&B``, magic, version) followed by LevelDB-style log records in
32 KiB blocks (crc32 4 bytes, length 2, type 1: full / first / middle / last), each payload a
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list:
    """Every Record in the log, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, out, parts = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        body = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            parts = body
        elif kind == FIRST:
            parts = body
            continue
        elif kind == MIDDLE:
            parts += body
            continue
        elif kind == LAST:
            parts += body
        rec = pb.Record()
        rec.ParseFromString(parts)
        out.append(rec)
    return out


def run_contents(path: str | Path) -> dict:
    """History keys (media under their own key too), config keys (and values as JSON), artifact names/types, summary keys of one offline run."""
    history: set[str] = set()
    config: dict[str, object] = {}
    artifacts: list[tuple[str, str]] = []
    for r in read_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            keys = {item.key or "/".join(item.nested_key) for item in r.history.item}
            history |= keys | {k.rsplit("/", 1)[0] for k in keys if k.endswith("/_type")}  # media: "key/_type" -> "key"
        elif kind == "config":
            for item in r.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run" and r.run.config.update:
            for item in r.run.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "artifact":
            artifacts.append((r.artifact.name, r.artifact.type))
    return {"history": history, "config": config, "artifacts": artifacts}
