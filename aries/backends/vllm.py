"""The `vllm` backend: vLLM's offline engine on one or more GPUs (tensor parallel).

Why vLLM for ARIES: round k of a refinement chain repeats round k-1's prompt plus its answer, so
with prefix caching the engine reuses the KV cache of the shared prefix instead of recomputing it.
Prompts are tokenized here, exactly as the `hf` backend does (chat template, or the plain template
for base models), so both engines see the same tokens and report the same prompt counts. `close()`
frees the GPU so the train stage of the same iteration can use it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends.base import Generation, Sampling, request_seeds
from aries.backends.lora import lora_policy, max_lora_rank, write_adapter
from aries.core.views import Message, prompt_token_ids, use_chat_template


class VLLMBackend:
    """Generation with `vllm.LLM` (local folder, hub id, `embedded`, a PEFT LoRA adapter, or a
    LoRA policy: base model plus adapter)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        enable_prefix_caching: bool = True,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        engine_options: dict[str, Any] | None = None,
    ):
        try:
            from vllm import LLM
        except ImportError as error:
            raise AriesError(
                f"the vllm backend needs vLLM ({error}); on a CUDA machine: "
                "pip install 'aries-llm[vllm]'"
            ) from None
        from aries.core.models import resolve_model

        path = resolve_model(model)
        options: dict[str, Any] = dict(engine_options or {})
        self.lora_request, self._stacked = None, None
        policy = lora_policy(path)
        if policy is not None:
            # A LoRA policy (train.lora): its base model with its adapter, as a server would.
            from vllm.lora.request import LoRARequest

            self._stacked = tempfile.mkdtemp(prefix="aries-lora-")
            adapter = write_adapter(policy, Path(self._stacked))
            self.lora_request = LoRARequest("policy", 1, str(adapter))
            options.update(enable_lora=True, max_lora_rank=max_lora_rank(policy.rank))
            path = policy.base
        self.llm = LLM(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype="auto" if dtype == "fast" else dtype,  # vLLM's auto: half precision on a GPU
            seed=seed,
            enable_prefix_caching=enable_prefix_caching,
            trust_remote_code=trust_remote_code,
            **options,
        )
        self.tokenizer = use_chat_template(self.llm.get_tokenizer(), chat_template)

    @property
    def context_length(self) -> int | None:
        return self.llm.llm_engine.model_config.max_model_len

    def count_prompt_tokens(self, conversation: list[Message]) -> int:
        return len(prompt_token_ids(self.tokenizer, conversation))

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [
            TokensPrompt(prompt_token_ids=prompt_token_ids(self.tokenizer, c))
            for c in conversations
        ]
        params = [
            SamplingParams(
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                seed=seed,
            )
            for seed in request_seeds(sampling.seed, conversations)
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        return [
            Generation(
                text=out.outputs[0].text.strip(),
                finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                prompt_tokens=len(out.prompt_token_ids),
                completion_tokens=len(out.outputs[0].token_ids),
            )
            for out in outputs
        ]

    def close(self) -> None:
        """Shut the engine down and return its GPU memory (the trainer runs next)."""
        import contextlib
        import gc

        import torch
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        engine_core = getattr(self.llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del self.llm
        destroy_model_parallel()
        destroy_distributed_environment()
        with contextlib.suppress(AssertionError, RuntimeError, ValueError):
            torch.distributed.destroy_process_group()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self._stacked:
            shutil.rmtree(self._stacked, ignore_errors=True)
