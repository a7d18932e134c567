"""Model repos laid out like real ones, for model pulls against the local hub (`tests.support.hub`).

- DEMO_SHARDED: a Llama checkpoint as transformers writes a big one — safetensors shards with their
  index, config, generation config and a full tokenizer — plus what an engine does not need and a
  pull must skip: the same weights as PyTorch .bin shards, a GGUF, ONNX and Flax export, the
  original checkpoint, a card and a license. `ENGINE_FILES` names the files a pull should fetch.
- DEMO_PRIVATE: the same layout, private (GRANTED_TOKEN sees it; without it the hub says 404).
- DEMO_OVERSIZED: a model whose metadata declares petabytes of weights, for disk checks.

`make_demo_hub()` holds all three (small); `add_model_repos(hub, shard_bytes=...)` builds bigger
shards for benchmarks.
"""

import json
import random

from tests.support.hub import LocalHub

DEMO_SHARDED = "berth-demo/sharded-llama"
DEMO_PRIVATE = "berth-demo/private-llama"
DEMO_OVERSIZED = "berth-demo/oversized-llama"
SHARDS = 3
DEFAULT_SHARD_BYTES = 48 * 1024
OVERSIZED_BYTES = 2 * 1000**5  # 2 PB: no disk has it free
ENGINE_FILES = frozenset({
    *(f"model-{index:05d}-of-{SHARDS:05d}.safetensors" for index in range(1, SHARDS + 1)),
    "model.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
})


def _safetensors_shard(name: str, float_count: int, seed: int) -> bytes:
    """A valid safetensors file with one F32 tensor of pseudo-random data (fast to make at any size)."""
    header = json.dumps({name: {"dtype": "F32", "shape": [float_count], "data_offsets": [0, 4 * float_count]}})
    header_bytes = header.encode() + b" " * (-len(header) % 8)
    generator = random.Random(seed)
    data = b"".join(generator.randbytes(min(1 << 20, 4 * float_count - offset))
                    for offset in range(0, 4 * float_count, 1 << 20))
    return len(header_bytes).to_bytes(8, "little") + header_bytes + data


def sharded_llama_files(shard_bytes: int = DEFAULT_SHARD_BYTES, seed: int = 0) -> dict[str, bytes]:
    floats = max(shard_bytes // 4, 1)
    shards = {f"model-{index:05d}-of-{SHARDS:05d}.safetensors": f"model.layers.{index - 1}.mlp.weight"
              for index in range(1, SHARDS + 1)}
    files = {path: _safetensors_shard(tensor, floats, seed + index)
             for index, (path, tensor) in enumerate(shards.items())}
    weight_map = {tensor: path for path, tensor in shards.items()}
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
              "num_hidden_layers": SHARDS, "vocab_size": 64, "max_position_embeddings": 4096}
    vocab = {"<s>": 1, "</s>": 2, **{f"t{index}": index + 3 for index in range(61)}}
    files.update({
        "model.safetensors.index.json": _json({"metadata": {"total_size": 4 * floats * SHARDS},
                                               "weight_map": weight_map}),
        "config.json": _json(config),
        "generation_config.json": _json({"bos_token_id": 1, "eos_token_id": 2, "temperature": 0.6}),
        "tokenizer.json": _json({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}),
        "tokenizer_config.json": _json({"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 4096,
                                        "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}),
        "special_tokens_map.json": _json({"bos_token": "<s>", "eos_token": "</s>"}),
        "tokenizer.model": bytes(range(256)) * 4,  # sentencepiece model: an LFS file
        # Not for the engine:
        "pytorch_model-00001-of-00002.bin": b"\x80\x02" + bytes(shard_bytes // 2),
        "pytorch_model-00002-of-00002.bin": b"\x80\x02" + bytes(shard_bytes // 2),
        "pytorch_model.bin.index.json": _json({"weight_map": {}}),
        "model-q4.gguf": b"GGUF" + bytes(shard_bytes // 4),
        "onnx/model.onnx": b"onnx" + bytes(1024),
        "flax_model.msgpack": b"\x80" + bytes(1024),
        "original/consolidated.00.pth": b"PK" + bytes(shard_bytes // 2),
        "original/params.json": _json({"dim": 16}),
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"---\nlicense: llama3.1\npipeline_tag: text-generation\n---\n# Demo\n",
        "LICENSE": b"demo license\n",
    })
    return files


def add_model_repos(hub: LocalHub, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
    def add_llama(repo_id: str, files: dict[str, bytes], **settings) -> None:
        hub.add_model(repo_id, files, pipeline_tag="text-generation", library_name="transformers",
                      license="llama3.1", **settings)

    add_llama(DEMO_SHARDED, sharded_llama_files(shard_bytes))
    add_llama(DEMO_PRIVATE, sharded_llama_files(DEFAULT_SHARD_BYTES, seed=100), private=True)
    add_llama(DEMO_OVERSIZED, sharded_llama_files(DEFAULT_SHARD_BYTES, seed=200),
              declared_sizes={"model-00001-of-00003.safetensors": OVERSIZED_BYTES})


def _json(payload: dict) -> bytes:
    return json.dumps(payload, indent=2).encode()
