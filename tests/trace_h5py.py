#!/usr/bin/env python3
"""Cross-checks between h5py and bsa (run by tests/trace_h5py.sh).

1. Files written by h5py alone (float16/float32, bool and int attributes,
   variable and fixed-length strings, unicode record names, numpy's int64
   sizes and a bool block map) are read by bsa: tests/trace_copy reads them
   through bsa's reader and writes them again through bsa's writer.
2. The files bsa writes are read back by h5py and compared value by value
   with what h5py wrote: float32 exactly, float16 bit for bit (and a float32
   source stored as float16 equals numpy's float16 rounding).
3. Bad files made with h5py fail in bsa with a message naming the file, the
   record and the dataset.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (pip install h5py numpy)")
    sys.exit(77)

BUILD = os.environ.get("BSA_BUILDDIR", ".")
COPY = os.path.join(BUILD, "tests", "trace_copy")
BSA = os.path.join(BUILD, "tools", "bsa")
seed = int.from_bytes(os.urandom(4), "little")
rng = np.random.default_rng(seed)
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL (seed {seed}): {what}")


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def normals(*shape, scale=2.0):
    x = rng.standard_normal(shape) * scale
    x[x == 0] = 1e-3
    return x


def write_trace_h5py(path, fixed_strings=False):
    recs = {}
    with h5py.File(path, "w") as f:
        if fixed_strings:
            f.attrs["format"] = np.bytes_(b"bsa-trace")
            f.attrs["model"] = np.bytes_(b"fixed-model")
        else:
            f.attrs["format"] = "bsa-trace"
            f.attrs["model"] = "tiny \u2713 model"
        f.attrs["format_version"] = 1
        f.attrs["source"] = "h5py"
        g = f.create_group("records")
        S, D = int(rng.integers(5, 120)), int(rng.integers(2, 48))
        # float16 GQA record with v; bool causal; unicode name
        r = g.create_group("l\u00e4yer 0")
        q = normals(4, S, D).astype(np.float16)
        k = normals(2, S, D).astype(np.float16)
        v = normals(2, S, D).astype(np.float16)
        r.create_dataset("q", data=q, chunks=True, compression="gzip")
        r.create_dataset("k", data=k)
        r.create_dataset("v", data=v, compression="gzip", shuffle=True)
        r.attrs["causal"] = np.bool_(True)
        r.attrs["layer"] = 0
        r.attrs["step"] = np.int32(-1)
        r.attrs["sm_scale"] = 0.3
        recs["l\u00e4yer 0"] = dict(q=q, k=k, v=v, causal=1, layer=0, step=-1, sm_scale=0.3)
        # float32 MHA record without v, different lengths
        Sk = int(rng.integers(5, 120))
        r = g.create_group("blk.7")
        q = normals(3, S, D).astype(np.float32)
        k = normals(3, Sk, D).astype(np.float32)
        r.create_dataset("q", data=q)
        r.create_dataset("k", data=k)
        r.attrs["causal"] = 0
        r.attrs["layer"] = 7
        recs["blk.7"] = dict(q=q, k=k, v=None, causal=0, layer=7, step=-1, sm_scale=None)
    return recs


def check_trace_copy(src_path, recs, out_path, dtype):
    res = run(COPY, "trace", src_path, out_path, dtype)
    check(res.returncode == 0, f"trace_copy {src_path} -> {dtype}: {res.stderr.strip()}")
    if res.returncode != 0:
        return
    with h5py.File(out_path, "r") as f:
        check(f.attrs["format"] == "bsa-trace" and isinstance(f.attrs["format"], str),
              f"format attribute read by h5py as {f.attrs['format']!r}")
        check(int(f.attrs["format_version"]) == 1, "format_version")
        check(isinstance(f.attrs["model"], str), "model is str in h5py")
        names = sorted(f["records"].keys())
        check(names == sorted(recs.keys()), f"record names {names} vs {sorted(recs)}")
        for name, want in recs.items():
            g = f["records"][name]
            for key in ("q", "k", "v"):
                if want[key] is None:
                    check(key not in g, f"{name}/{key} should be absent")
                    continue
                got = g[key][()]
                check(got.dtype == (np.float16 if dtype == "f16" else np.float32),
                      f"{name}/{key} dtype {got.dtype} for {dtype}")
                check(g[key].compression == "gzip" and g[key].chunks is not None,
                      f"{name}/{key} not chunked+gzip")
                exp = want[key].astype(np.float16 if dtype == "f16" else np.float32)
                check(got.shape == exp.shape, f"{name}/{key} shape {got.shape} vs {exp.shape}")
                if got.shape == exp.shape:
                    same = np.array_equal(got.view(np.uint16), exp.view(np.uint16)) \
                        if dtype == "f16" else np.array_equal(got, exp)
                    check(same, f"{name}/{key} values differ ({dtype})")
            check(int(g.attrs["causal"]) == want["causal"], f"{name} causal")
            check(int(g.attrs["layer"]) == want["layer"], f"{name} layer")
            check(int(g.attrs["step"]) == want["step"], f"{name} step")
            if want["sm_scale"] is not None:
                check(abs(float(g.attrs["sm_scale"]) - want["sm_scale"]) < 1e-7, f"{name} sm_scale")


def write_masks_h5py(path):
    recs = {}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "bsa-masks"
        f.attrs["format_version"] = 1
        f.attrs["method"] = "kmeans"
        f.attrs["params"] = json.dumps({"q_clusters": 4, "top_p": 0.9})
        f.attrs["trace"] = "t.h5"
        f.attrs["trace_sha256"] = "0" * 64
        g = f.create_group("records")
        for name in ("layer00", "layer01"):
            H, MB, NB = (int(x) for x in rng.integers(1, 6, size=3))
            Sq, Sk = int(rng.integers(MB, 90)), int(rng.integers(NB, 90))

            def sizes(n, total):
                out = np.zeros((H, n), dtype=np.int64)
                for h in range(H):
                    cuts = np.sort(rng.integers(0, total + 1, size=n - 1))
                    out[h] = np.diff(np.concatenate([[0], cuts, [total]]))
                return out

            rec = dict(
                block_mask_map=rng.integers(0, 2, size=(H, MB, NB)).astype(bool),
                block_row_sz=sizes(MB, Sq), block_col_sz=sizes(NB, Sk),
                q_perm=np.stack([rng.permutation(Sq) for _ in range(H)]),
                k_perm=np.stack([rng.permutation(Sk) for _ in range(H)]),
                block_scores=rng.random((H, MB, NB)).astype(np.float32))
            r = g.create_group(name)
            for key, val in rec.items():
                r.create_dataset(key, data=val)
            r.attrs["density"] = float(rng.random())
            rec["density"] = float(r.attrs["density"])
            recs[name] = rec
    return recs


def check_masks_copy(src, recs, out):
    res = run(COPY, "masks", src, out)
    check(res.returncode == 0, f"trace_copy masks: {res.stderr.strip()}")
    if res.returncode != 0:
        return
    with h5py.File(out, "r") as f:
        check(f.attrs["method"] == "kmeans", "method")
        check(json.loads(f.attrs["params"]) == {"q_clusters": 4, "top_p": 0.9}, "params JSON")
        check(f.attrs["trace_sha256"] == "0" * 64, "trace_sha256")
        for name, want in recs.items():
            g = f["records"][name]
            check(g["block_mask_map"].dtype == np.uint8, "map dtype uint8")
            check(np.array_equal(g["block_mask_map"][()], want["block_mask_map"].astype(np.uint8)),
                  f"{name} block_mask_map")
            for key in ("block_row_sz", "block_col_sz", "q_perm", "k_perm"):
                check(g[key].dtype == np.int32, f"{name}/{key} dtype {g[key].dtype}")
                check(np.array_equal(g[key][()], want[key]), f"{name}/{key} values")
            check(np.array_equal(g["block_scores"][()], want["block_scores"]), f"{name} scores")
            check(abs(float(g.attrs["density"]) - want["density"]) == 0, f"{name} density")
            check(int(g.attrs["qo_len"]) == int(want["block_row_sz"][0].sum()), f"{name} qo_len")


def expect_error(kind, path, needles):
    res = run(COPY, kind, path, path + ".out", *(["f32"] if kind == "trace" else []))
    check(res.returncode == 1, f"{path}: expected failure, got {res.returncode}")
    for n in [path] + needles:
        check(n in res.stderr, f"{path}: message {res.stderr.strip()!r} lacks {n!r}")
    check(not os.path.exists(path + ".out"), f"{path}: output written despite the error")


with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "h5py-trace.h5")
    recs = write_trace_h5py(p)
    check_trace_copy(p, recs, os.path.join(d, "bsa32.h5"), "f32")
    check_trace_copy(p, recs, os.path.join(d, "bsa16.h5"), "f16")
    p2 = os.path.join(d, "h5py-fixed.h5")
    recs2 = write_trace_h5py(p2, fixed_strings=True)
    check_trace_copy(p2, recs2, os.path.join(d, "bsa-fixed.h5"), "f32")
    # float32 source written by bsa as float16 equals numpy's rounding
    with h5py.File(os.path.join(d, "f32src.h5"), "w") as f:
        f.attrs["format"] = "bsa-trace"
        f.attrs["format_version"] = 1
        r = f.create_group("records/r")
        q = normals(2, 50, 16, scale=300.0).astype(np.float32)
        q.flat[:4] = [1e-7, -6.1e-5, 65504.0, 0.1]   # subnormal, edge, max, inexact
        r["q"] = q
        r["k"] = q[:1]
        r.attrs["causal"] = 0
    out = os.path.join(d, "f32to16.h5")
    res = run(COPY, "trace", os.path.join(d, "f32src.h5"), out, "f16")
    check(res.returncode == 0, f"f32 -> f16: {res.stderr}")
    if res.returncode == 0:
        with h5py.File(out, "r") as f:
            got = f["records/r/q"][()]
            check(np.array_equal(got.view(np.uint16), q.astype(np.float16).view(np.uint16)),
                  "float16 rounding differs from numpy's")
    # bsa trace info --json on an h5py file
    if os.access(BSA, os.X_OK):
        res = run(BSA, "--no-log", "trace", "info", p, "--json")
        check(res.returncode == 0, f"bsa trace info: {res.stderr}")
        lines = [json.loads(x) for x in res.stdout.splitlines()]
        check(lines[0]["records"] == 2 and lines[0]["model"] == "tiny \u2713 model", "info head")
        by = {x["record"]: x for x in lines[1:]}
        uname = "l\u00e4yer 0"
        g = recs[uname]
        got = by.get(uname, {})
        check(got.get("q_dtype") == "float16" and got.get("causal") == 1, f"info record {got}")
        check(by["blk.7"]["v_dtype"] is None and by["blk.7"]["kv_len"] == recs["blk.7"]["k"].shape[1],
              "info record blk.7")
        check(got.get("num_kv_heads") == g["k"].shape[0], "info kv heads")

    m = os.path.join(d, "h5py-masks.h5")
    mrecs = write_masks_h5py(m)
    check_masks_copy(m, mrecs, os.path.join(d, "bsa-masks.h5"))

    # Bad files written by h5py.
    bad = os.path.join(d, "bad-heads.h5")
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "bsa-trace"
        f.attrs["format_version"] = 1
        r = f.create_group("records/attn")
        r["q"] = normals(3, 8, 4).astype(np.float32)
        r["k"] = normals(2, 8, 4).astype(np.float32)
        r.attrs["causal"] = 0
    expect_error("trace", bad, ["record 'attn'", "'q' has 3 heads", "Hq % Hkv"])
    bad = os.path.join(d, "bad-sizes.h5")
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "bsa-masks"
        f.attrs["format_version"] = 1
        r = f.create_group("records/m")
        r["block_mask_map"] = np.ones((2, 2, 2), dtype=np.uint8)
        r["block_row_sz"] = np.array([[3, 5], [4, 5]])
        r["block_col_sz"] = np.array([[3, 5], [4, 4]])
    expect_error("masks", bad, ["record 'm'", "block_row_sz of head 1 sums to 9"])
    bad = os.path.join(d, "bad-perm.h5")
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "bsa-masks"
        f.attrs["format_version"] = 1
        r = f.create_group("records/m")
        r["block_mask_map"] = np.ones((1, 2, 2), dtype=np.uint8)
        r["block_row_sz"] = np.array([[3, 5]])
        r["block_col_sz"] = np.array([[4, 4]])
        r["k_perm"] = np.array([[0, 1, 2, 3, 4, 5, 6, 6]])
    expect_error("masks", bad, ["record 'm'", "k_perm is not a permutation", "token 6 appears twice"])

print(f"seed {seed}: {'ok' if failures == 0 else f'{failures} failures'}")
sys.exit(1 if failures else 0)
