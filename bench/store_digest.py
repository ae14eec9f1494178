"""SHA-256 of every array of a store, over its decoded values (not its chunks, so chunk sizes
and chunk-key encodings do not count), plus one digest of them all.

Used to show that a change of code leaves the demo store identical:

    python bench/store_digest.py gait.zarr > before.json   # on the old code
    python bench/store_digest.py gait.zarr > after.json    # on the new code
    diff before.json after.json
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

from builder.store.layout import ARRAYS
from builder.store.reader import open_group


def digest(url: str) -> dict[str, str]:
    group = open_group(url)  # the published version, pinned
    found = {}
    for spec in ARRAYS:
        values = np.asarray(group[spec.name][...])
        dtype = str(values.dtype)
        if values.dtype.kind in "OTU":  # strings: their UTF-8 text, one per line (the memory
            # of numpy's StringDType holds pointers, which differ from one read to the next)
            data, dtype = "\n".join(map(str, values.ravel())).encode(), "str"
        else:
            data = np.ascontiguousarray(values).tobytes()
        shape = ",".join(map(str, values.shape))
        found[spec.name] = hashlib.sha256(f"{shape}|{dtype}|".encode() + data).hexdigest()
    everything = json.dumps(found, sort_keys=True).encode()
    return {"all": hashlib.sha256(everything).hexdigest(), **found}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/store_digest.py STORE_URL")
    print(json.dumps(digest(sys.argv[1]), indent=2))
