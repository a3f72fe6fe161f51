"""A tiny random-weight WanVACEPipeline, built in-process (nothing downloads): UMT5 text encoder
from a config, a word-level tokenizer built with the `tokenizers` library, a tiny
AutoencoderKLWan and WanVACETransformer3DModel, the flow-matching Euler scheduler.

    path = save_tiny_wan(tmp_path / "tiny-wan")      # a diffusers model directory
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("a red blue green yellow circle square triangle moves left right up down on the in of and "
         "with ball cat dog shot next previous video image subject snow rain style make it add remove "
         "replace background glass gold box arrow frame @image_1 @image_2 @video").split()


def build_tiny_wan(seed: int = 0):
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                        model_max_length=64)
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                               num_heads=2, relative_attention_num_buckets=8, pad_token_id=0,
                                               eos_token_id=1, decoder_start_token_id=0)).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                           latents_std=[1.0] * 4).eval()
    torch.manual_seed(seed + 2)
    transformer = WanVACETransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                            in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32,
                                            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                            rope_max_seq_len=32, vace_layers=[0], vace_in_channels=4 * 2 + 64).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=transformer)


def save_tiny_wan(directory: str | Path, seed: int = 0) -> Path:
    d = Path(directory)
    build_tiny_wan(seed).save_pretrained(d)
    return d
