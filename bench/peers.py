#!/usr/bin/env python3
"""bench/peers.py - peer attention kernels on the shapes and masks of `bsa bench`.

Runs, in one process and on one GPU, PyTorch SDPA with the flash (FA2) and
cuDNN backends and FlexAttention (torch.compile) on:

  dense      H q heads / Hkv kv heads, S tokens, D head dim (SDPA flash, cuDNN, Flex)
  bsr        fixed B x B blocks, a random block map per kv head: each block
             row keeps its diagonal block and round(density * NB) - 1 others
             (Flex BlockMask whose kept blocks are all full, so no mask_mod
             runs inside them)
  var        variable blocks: random partitions of S into MB row / NB column
             clusters per head (distinct uniform cut points) and
             round(density * NB) random blocks per row; Flex through a
             mask_mod on cluster ids (the way FlexAttention expresses
             variable blocks)

The masks follow the recipe of `bsa bench` (tools/bench_random.c).  Effective
TFLOP/s counts only the visible (query, key) pairs: 4 * D * pairs / time.
Times: triton.testing.do_bench medians (warm-up first, L2 flushed between
repetitions).

Prints a table and, with --json FILE, writes one JSON object per line.

  python3 bench/peers.py --suite targets --json peers.jsonl
  python3 bench/peers.py --layout var --heads 32 --seq 32768 --blocks 100x100 --density 0.1
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

try:
    from torch.nn.attention.flex_attention import (BlockMask, create_block_mask,
                                                   flex_attention)
    HAVE_FLEX = True
except ImportError:  # older torch
    HAVE_FLEX = False

from triton.testing import do_bench

_flex = None


def flex():
    global _flex
    if _flex is None:
        _flex = torch.compile(flex_attention, dynamic=False)
    return _flex


def bench_ms(fn):
    fn()
    torch.cuda.synchronize()
    return do_bench(fn, warmup=50, rep=200, return_mode="median")


def qkv(h, hkv, s, d, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    mk = lambda n: (torch.rand((1, n, s, d), device="cuda", generator=g, dtype=torch.float32) * 4 - 2).to(dtype)
    return mk(h), mk(hkv), mk(hkv)


def keep_rows(heads, mb, nb, dens, g, diagonal):
    """[heads, mb, nb] bool: round(dens * nb) kept blocks per row (at least
    one), the diagonal among them when asked."""
    k = min(max(1, round(dens * nb)), nb)
    score = torch.rand((heads, mb, nb), generator=g)
    if diagonal:
        idx = torch.arange(min(mb, nb))
        score[:, idx, idx] = 2.0  # always among the top k
    top = torch.topk(score, k, dim=-1).indices
    keep = torch.zeros((heads, mb, nb), dtype=torch.bool)
    keep.scatter_(-1, top, True)
    return keep


def partition(n, total, g):
    """Random partition of total into n positive parts (distinct cut points)."""
    cuts = torch.sort(torch.randperm(total - 1, generator=g)[: n - 1] + 1).values
    cuts = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
    return cuts[1:] - cuts[:-1]


def row(peer, layout, a, ms, flops, dense_ref_ms=None, extra=None):
    r = {"peer": peer, "layout": layout, "heads": a.heads, "kv_heads": a.kv_heads,
         "seq": a.seq, "head_dim": a.head_dim, "dtype": a.dtype, "time_ms": round(ms, 4),
         "tflops_effective": round(flops / (ms * 1e-3) / 1e12, 1)}
    if dense_ref_ms is not None:
        r["speedup_vs_cudnn_dense"] = round(dense_ref_ms / ms, 2)
    if extra:
        r.update(extra)
    return r


def run_dense(a, q, k, v):
    out = []
    flops = 4.0 * a.heads * a.seq * a.seq * a.head_dim
    gqa = a.heads != a.kv_heads
    res = {}
    for name, be in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel([be]):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
                res[name] = bench_ms(fn)
            out.append(row(name, "dense", a, res[name], flops))
        except Exception as e:  # backend not available for this shape
            print(f"peers: {name} dense failed: {e}", file=sys.stderr)
    if HAVE_FLEX and a.flex_dense:
        try:
            fn = lambda: flex()(q, k, v, enable_gqa=gqa)
            out.append(row("flex", "dense", a, bench_ms(fn), flops))
        except Exception as e:
            print(f"peers: flex dense failed: {e}", file=sys.stderr)
    return out, res.get("sdpa_cudnn")


def run_bsr(a, q, k, v, dense_ms):
    B = a.block
    nb = (a.seq + B - 1) // B
    g = torch.Generator().manual_seed(a.seed)
    out = []
    for dens in a.densities:
        keep = keep_rows(a.kv_heads, nb, nb, dens, g, diagonal=True)
        keep_q = keep.repeat_interleave(a.heads // a.kv_heads, dim=0)  # per query head
        # Visible pairs: kept blocks times their real sizes (last block may be partial).
        bs = torch.full((nb,), B)
        bs[-1] = a.seq - B * (nb - 1)
        pairs = float((keep_q.float() * (bs[None, :, None] * bs[None, None, :]).float()).sum())
        flops = 4.0 * a.head_dim * pairs
        extra = {"block": B, "density_req": dens, "density": round(pairs / (a.heads * a.seq * a.seq), 4)}
        if not HAVE_FLEX:
            continue
        # create_block_mask finds that every kept block is full, so Flex runs
        # them without evaluating the mask_mod (pure block sparsity).
        keep_d = keep.cuda()
        grp = a.heads // a.kv_heads

        def mask_mod(b, h, q_idx, kv_idx):
            return keep_d[h // grp, q_idx // B, kv_idx // B]

        bm = create_block_mask(mask_mod, 1, a.heads, a.seq, a.seq, device="cuda", BLOCK_SIZE=B,
                               _compile=True)
        try:
            fn = lambda: flex()(q, k, v, block_mask=bm, enable_gqa=a.heads != a.kv_heads)
            out.append(row("flex", "bsr", a, bench_ms(fn), flops, dense_ms, extra))
        except Exception as e:
            print(f"peers: flex bsr failed: {e}", file=sys.stderr)
    return out


def run_var(a, q, k, v, dense_ms):
    g = torch.Generator().manual_seed(a.seed + 1)
    out = []
    for dens in a.densities:
        rs = torch.stack([partition(a.mb, a.seq, g) for _ in range(a.kv_heads)])
        cs = torch.stack([partition(a.nb, a.seq, g) for _ in range(a.kv_heads)])
        keep = keep_rows(a.kv_heads, a.mb, a.nb, dens, g, diagonal=False)
        pairs = float((keep.float() * rs[:, :, None].float() * cs[:, None, :].float()).sum())
        pairs *= a.heads // a.kv_heads
        flops = 4.0 * a.head_dim * pairs
        extra = {"blocks": f"{a.mb}x{a.nb}", "density_req": dens,
                 "density": round(pairs / (a.heads * a.seq * a.seq), 4)}
        if not HAVE_FLEX:
            continue
        grp = a.heads // a.kv_heads
        qc = torch.cat([torch.repeat_interleave(torch.arange(a.mb), rs[h]) for h in range(a.kv_heads)]).view(a.kv_heads, a.seq).cuda()
        kc = torch.cat([torch.repeat_interleave(torch.arange(a.nb), cs[h]) for h in range(a.kv_heads)]).view(a.kv_heads, a.seq).cuda()
        keep_d = keep.cuda()

        def mask_mod(b, h, q_idx, kv_idx):
            hk = h // grp
            return keep_d[hk, qc[hk, q_idx], kc[hk, kv_idx]]

        try:
            t0 = time.time()
            bm = create_block_mask(mask_mod, 1, a.heads, a.seq, a.seq, device="cuda", _compile=True)
            torch.cuda.synchronize()
            mask_s = time.time() - t0
            fn = lambda: flex()(q, k, v, block_mask=bm, enable_gqa=a.heads != a.kv_heads)
            extra["flex_block_mask_s"] = round(mask_s, 3)
            out.append(row("flex", "var", a, bench_ms(fn), flops, dense_ms, extra))
        except Exception as e:
            print(f"peers: flex var failed: {e}", file=sys.stderr)
    return out


def run_one(a):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    q, k, v = qkv(a.heads, a.kv_heads, a.seq, a.head_dim, dtype, a.seed)
    rows, cudnn_ms = run_dense(a, q, k, v)
    if cudnn_ms:
        for r in rows:
            r["speedup_vs_cudnn_dense"] = round(cudnn_ms / r["time_ms"], 2)
    if a.layout == "bsr":
        rows += run_bsr(a, q, k, v, cudnn_ms)
    elif a.layout == "var":
        rows += run_var(a, q, k, v, cudnn_ms)
    del q, k, v
    torch.cuda.empty_cache()
    return rows


SUITES = {
    # The shapes of the CUDA targets (docs/kernels.md).
    "targets": [
        dict(layout="bsr", heads=32, kv_heads=32, seq=8192, head_dim=128, block=128,
             densities=[0.5, 0.25, 0.1, 0.05]),
        dict(layout="dense", heads=32, kv_heads=32, seq=8192, head_dim=64),
        dict(layout="dense", heads=32, kv_heads=8, seq=8192, head_dim=128),
        dict(layout="var", heads=32, kv_heads=32, seq=32768, head_dim=128, mb=100, nb=100,
             densities=[0.1]),
        dict(layout="var", heads=24, kv_heads=24, seq=75600, head_dim=128, mb=400, nb=1000,
             densities=[0.1], flex_dense=False),
    ],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=sorted(SUITES))
    ap.add_argument("--layout", default="dense", choices=["dense", "bsr", "var"])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--blocks", default="100x100")
    ap.add_argument("--density", default="0.1")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write JSON lines here")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("peers: no CUDA device", file=sys.stderr)
        return 77
    base = vars(a).copy()
    configs = []
    if a.suite:
        for c in SUITES[a.suite]:
            d = dict(base)
            d.update(c)
            configs.append(d)
    else:
        d = dict(base)
        d["densities"] = [float(x) for x in a.density.split(",")]
        configs.append(d)
    rows = []
    for c in configs:
        ns = argparse.Namespace(**c)
        if not ns.kv_heads:
            ns.kv_heads = ns.heads
        ns.mb, ns.nb = (int(x) for x in (c.get("blocks") or "100x100").split("x"))
        if "mb" in c and c["mb"]:
            ns.mb, ns.nb = c["mb"], c["nb"]
        ns.densities = c.get("densities") or [0.1]
        ns.flex_dense = c.get("flex_dense", True)
        print(f"peers: {ns.layout} H={ns.heads}/{ns.kv_heads} S={ns.seq} D={ns.head_dim}", file=sys.stderr, flush=True)
        rows += run_one(ns)
    dev = torch.cuda.get_device_name()
    for r in rows:
        r["device"] = dev
        r["torch"] = torch.__version__
    hdr = f"{'peer':<11}{'layout':<7}{'H':>4}{'Hkv':>5}{'S':>7}{'D':>5}{'blocks':>9}{'density':>9}{'ms':>10}{'TFLOP/s':>9}{'vs cuDNN':>9}"
    print(f"device: {dev}, torch {torch.__version__}")
    print(hdr)
    for r in rows:
        blk = r.get("blocks") or (str(r["block"]) if "block" in r else "-")
        print(f"{r['peer']:<11}{r['layout']:<7}{r['heads']:>4}{r['kv_heads']:>5}{r['seq']:>7}{r['head_dim']:>5}"
              f"{blk:>9}{r.get('density', 1.0):>9}{r['time_ms']:>10.3f}{r['tflops_effective']:>9.1f}"
              f"{r.get('speedup_vs_cudnn_dense', float('nan')):>9.2f}")
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
