"""Byte-stable safetensors writing for the parity fixture scripts in this folder."""
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata, largest_first=False):
    """A safetensors file with a sorted header and 8-byte aligned data, so that the
    output is byte-stable. Tensors go in name order, or (`largest_first`) by element
    size then name."""
    if largest_first:
        order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    else:
        order = sorted(tensors)
    header, blobs, offset = {}, [], 0
    for name in order:
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().tobytes(order="C")
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def read_back(path, tensors):
    """The file reads back with the `safetensors` library as exactly `tensors`."""
    from safetensors.torch import load_file
    back = load_file(str(path))
    assert sorted(back) == sorted(tensors), path
    for k, v in tensors.items():
        assert torch.equal(back[k], v.contiguous().cpu()), f"{path}: {k}"
