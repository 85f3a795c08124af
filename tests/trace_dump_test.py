#!/usr/bin/env python3
"""Tests python/bsa_trace_dump.py on tiny randomly initialised transformers
models built here from configs (nothing is downloaded): a Llama decoder with
GQA and RoPE, and a BERT encoder.  Run by tests/trace_dump.sh; exits 77 when
torch, transformers or h5py are missing.

Checks: for every layer, softmax(q k^T * sm_scale [+ causal]) v computed from
the trace equals the attention output the model produced (captured at the
input of the output projection), which holds only when q and k are the
post-RoPE tensors; q differs from the raw q projection except at position 0
(where RoPE is the identity); shapes, GQA, causal and dtypes as `bsa trace
info --json` reports them; the command line on a saved model folder.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    import transformers
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (pip install torch transformers h5py)")
    sys.exit(77)

SRC = os.environ.get("BSA_SRCDIR", ".")
BUILD = os.environ.get("BSA_BUILDDIR", ".")
BSA = os.path.join(BUILD, "tools", "bsa")
sys.path.insert(0, os.path.join(SRC, "python"))
import bsa_trace_dump  # noqa: E402

seed = int.from_bytes(os.urandom(4), "little")
torch.manual_seed(seed)
rng = np.random.default_rng(seed)
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL (seed {seed}): {what}")


def attention(q, k, v, scale, causal):
    """q [Hq,S,D], k/v [Hkv,S,D] -> [S, Hq*D] in float64."""
    hq, s, d = q.shape
    g = hq // k.shape[0]
    out = np.zeros((s, hq * d))
    for h in range(hq):
        x = q[h].astype(np.float64) @ k[h // g].astype(np.float64).T * scale
        if causal:
            x = np.where(np.tri(s, k.shape[1], k.shape[1] - s, dtype=bool), x, -np.inf)
        x -= x.max(axis=1, keepdims=True)
        p = np.exp(x)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h * d:(h + 1) * d] = p @ v[h // g].astype(np.float64)
    return out


def hook_inputs(modules):
    got = {}
    hooks = []
    for i, m in enumerate(modules):
        def fn(mod, args, i=i):
            got[i] = args[0][0].detach().double().numpy()
        hooks.append(m.register_forward_pre_hook(fn))
    return got, hooks


def run_model(kind, path, dtype):
    S = int(rng.integers(9, 40))
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96,
                          num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=128)
        model = LlamaModel(cfg)
        outs = [layer.self_attn.o_proj for layer in model.layers]
        qproj = [layer.self_attn.q_proj for layer in model.layers]
    else:
        cfg = BertConfig(vocab_size=97, hidden_size=48, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
        model = BertModel(cfg)
        outs = [layer.attention.output.dense for layer in model.encoder.layer]
        qproj = [layer.attention.self.query for layer in model.encoder.layer]
    model.eval()
    ids = torch.from_numpy(rng.integers(1, 97, size=(1, S)).astype(np.int64))
    attn_out, h1 = hook_inputs(outs)
    q_raw = {}
    h2 = []
    for i, m in enumerate(qproj):
        def fn(mod, args, out, i=i):
            q_raw[i] = out[0].detach().double().numpy()
        h2.append(m.register_forward_hook(fn))
    info = bsa_trace_dump.dump(model, ids, path, dtype=dtype, model_name=f"tiny-{kind}",
                               source=f"test seed {seed}")
    for h in h1 + h2:
        h.remove()
    return cfg, info, attn_out, q_raw, S


with tempfile.TemporaryDirectory() as d:
    for kind in ("llama", "bert"):
        path = os.path.join(d, f"{kind}.h5")
        cfg, info, attn_out, q_raw, S = run_model(kind, path, "f32")
        hq = cfg.num_attention_heads
        hkv = getattr(cfg, "num_key_value_heads", None) or hq
        D = cfg.hidden_size // hq
        causal = 1 if kind == "llama" else 0
        check(info["records"] == cfg.num_hidden_layers, f"{kind}: {info['records']} records")
        with h5py.File(path, "r") as f:
            check(f.attrs["format"] == "bsa-trace" and int(f.attrs["format_version"]) == 1, "format")
            check(("post-RoPE" in f.attrs["positions"]) == (kind == "llama"),
                  f"{kind}: positions = {f.attrs['positions']!r}")
            for i in range(cfg.num_hidden_layers):
                g = f["records"][f"layer{i:02d}"]
                q, k, v = g["q"][()], g["k"][()], g["v"][()]
                check(q.shape == (hq, S, D) and k.shape == (hkv, S, D) and v.shape == k.shape,
                      f"{kind} layer {i}: shapes {q.shape} {k.shape} {v.shape}")
                check(int(g.attrs["causal"]) == causal, f"{kind} layer {i}: causal")
                check(int(g.attrs["layer"]) == i, f"{kind} layer {i}: layer attr")
                scale = float(g.attrs["sm_scale"])
                check(abs(scale - D ** -0.5) < 1e-6, f"{kind}: sm_scale {scale}")
                mine = attention(q, k, v, scale, causal)
                ref = attn_out[i]
                err = np.linalg.norm(mine - ref) / np.linalg.norm(ref)
                check(err < 1e-5, f"{kind} layer {i}: attention from the trace differs from the "
                                  f"model's, rel L2 {err:.2e}")
                # q against the raw projection: RoPE moves every position but 0.
                raw = q_raw[i].reshape(S, hq, D).transpose(1, 0, 2)
                diff = np.abs(raw - q).max(axis=(0, 2))
                check(diff[0] < 1e-5, f"{kind} layer {i}: q at position 0 differs from q_proj")
                if kind == "llama":
                    check(diff[1:].min() > 1e-4, f"{kind} layer {i}: q looks pre-RoPE")
                else:
                    check(diff.max() < 1e-5, f"{kind} layer {i}: q is not the plain projection")
        # The C side reads the file.
        if os.access(BSA, os.X_OK):
            res = subprocess.run([BSA, "--no-log", "trace", "info", path, "--json"],
                                 capture_output=True, text=True)
            check(res.returncode == 0, f"bsa trace info {kind}: {res.stderr}")
            lines = [json.loads(x) for x in res.stdout.splitlines()] if res.returncode == 0 else []
            if lines:
                check(lines[0]["records"] == cfg.num_hidden_layers and
                      lines[0]["model"] == f"tiny-{kind}", f"info: {lines[0]}")
                for r in lines[1:]:
                    check(r["num_qo_heads"] == hq and r["num_kv_heads"] == hkv and
                          r["qo_len"] == S and r["head_dim"] == D and r["causal"] == causal and
                          r["q_dtype"] == "float32", f"info record {r}")
        else:
            print(f"note: {BSA} not built; bsa trace info not exercised")

    # float16 output and the command line on a saved model folder.
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    mdir = os.path.join(d, "tiny-llama")
    LlamaModel(cfg).save_pretrained(mdir)
    out = os.path.join(d, "cli.h5")
    ids = ",".join(str(x) for x in rng.integers(1, 97, size=21))
    res = subprocess.run([sys.executable, os.path.join(SRC, "python", "bsa_trace_dump.py"),
                          "--model", mdir, "--input-ids", ids, "--dtype", "f16",
                          "--layers", "1", "--out", out],
                         capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    check(res.returncode == 0, f"dumper command line: {res.stderr[-2000:]}")
    if res.returncode == 0:
        with h5py.File(out, "r") as f:
            check(list(f["records"].keys()) == ["layer01"], f"--layers 1: {list(f['records'])}")
            check(f["records/layer01/q"].dtype == np.float16, "f16 dtype")
            check(f["records/layer01/k"].shape == (1, 21, 16), f"k shape {f['records/layer01/k'].shape}")
        check(not [x for x in os.listdir(d) if ".tmp-" in x], "temporary file left")
    # A bad request fails cleanly and writes nothing.
    res = subprocess.run([sys.executable, os.path.join(SRC, "python", "bsa_trace_dump.py"),
                          "--model", mdir, "--input-ids", "1,2", "--dtype", "bf16",
                          "--out", os.path.join(d, "bad.h5")], capture_output=True, text=True)
    check(res.returncode != 0 and not os.path.exists(os.path.join(d, "bad.h5")), "bad dtype")

print(f"trace_dump: seed {seed}, transformers {transformers.__version__}: "
      f"{'ok' if failures == 0 else f'{failures} failures'}")
sys.exit(1 if failures else 0)
