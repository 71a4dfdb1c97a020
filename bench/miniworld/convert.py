"""Convert the mini CLIP's text tower into a transformers CLIPTextModel + CLIPTokenizer.

Stable Diffusion 1.x consumes CLIP ViT-L/14's text tower through transformers; the mini world
does the same with its own CLIP (docs/protocol.md, "The mini world"). The weight map is
open_clip's names onto transformers' (the fused ``in_proj`` split into q/k/v, ``text_projection``
transposed); the tokenizer's vocab.json / merges.txt are built from the BPE file that open_clip
ships, so token ids are identical. tests/test_miniworld_models.py checks ids and hidden states
(atol 1e-4) between the two. Loads are strict: a non-strict load into a transformers
5.x model with mismatched prefixes silently loads nothing.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

BOS, EOS = 49406, 49407
N_MERGES = 49152 - 256 - 2 + 1  # the merges open_clip's SimpleTokenizer uses: lines[1:48895]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode table, which CLIP's BPE is written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_path() -> Path:
    import open_clip
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_tokenizer_files(out_dir: Path) -> Path:
    """Write vocab.json and merges.txt (and configs) for a transformers CLIPTokenizer."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:N_MERGES]]
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + \
        ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    # The gz's first line is its own header, not a merge: write transformers' header instead.
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                        encoding="utf-8")
    return out_dir


def build_clip_tokenizer(out_dir: Path, model_max_length: int):
    from transformers import CLIPTokenizer
    write_clip_tokenizer_files(out_dir)
    # Loading from the folder works across transformers 4.x (vocab_file=) and 5.x (vocab=)
    # constructors. Pad with end-of-text as SD 1.x does; a "!" pad would become special.
    (Path(out_dir) / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": model_max_length, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer"}))
    tokenizer = CLIPTokenizer.from_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def text_config_from_openclip(clip_config: dict):
    from transformers import CLIPTextConfig
    t = clip_config["text_cfg"]
    return CLIPTextConfig(vocab_size=t["vocab_size"], hidden_size=t["width"],
                          intermediate_size=4 * t["width"], num_hidden_layers=t["layers"],
                          num_attention_heads=t["heads"], max_position_embeddings=t["context_length"],
                          hidden_act="quick_gelu" if clip_config.get("quick_gelu") else "gelu",
                          layer_norm_eps=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS,
                          projection_dim=clip_config["embed_dim"])


def openclip_text_state_to_transformers(state: dict, layers: int, prefix: str = "") -> dict:
    """Map an open_clip CLIP state dict's text tower onto CLIPTextModel's key names.

    ``prefix`` is "text_model." for transformers 4.x and "" for 5.x, whose CLIPTextModel
    state dict dropped it; `openclip_to_text_model` reads it off the target model.
    """
    out = {
        prefix + "embeddings.token_embedding.weight": state["token_embedding.weight"],
        prefix + "embeddings.position_embedding.weight": state["positional_embedding"],
        prefix + "final_layer_norm.weight": state["ln_final.weight"],
        prefix + "final_layer_norm.bias": state["ln_final.bias"],
    }
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"{prefix}encoder.layers.{i}."
        q, k, v = state[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = state[src + "attn.in_proj_bias"].chunk(3, dim=0)
        for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out[dst + f"self_attn.{name}.weight"] = w
            out[dst + f"self_attn.{name}.bias"] = b
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for a, b_ in pairs.items():
            out[dst + b_ + ".weight"] = state[src + a + ".weight"]
            out[dst + b_ + ".bias"] = state[src + a + ".bias"]
    return {k: v.detach().clone().float().contiguous() for k, v in out.items()}


def openclip_to_text_model(clip_model, clip_config: dict):
    """A transformers CLIPTextModel with the open_clip model's text tower, loaded strictly."""
    from transformers import CLIPTextModel
    config = text_config_from_openclip(clip_config)
    model = CLIPTextModel(config)
    target_keys = model.state_dict().keys()
    prefix = "text_model." if any(k.startswith("text_model.") for k in target_keys) else ""
    try:
        state = openclip_text_state_to_transformers(clip_model.state_dict(), config.num_hidden_layers, prefix)
    except KeyError as exc:
        raise RuntimeError(f"text-tower conversion: the CLIP has no weight {exc} for this config") from None
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def openclip_hidden_states(clip_model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's per-token text features after ln_final (what SD's UNet would consume)."""
    x = clip_model.token_embedding(tokens)
    x = x + clip_model.positional_embedding[: tokens.shape[1]]
    x = clip_model.transformer(x, attn_mask=clip_model.attn_mask)
    return clip_model.ln_final(x)
