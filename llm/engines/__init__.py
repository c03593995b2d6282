"""Generation engines behind one interface: each is a LangChain LLM whose `.stream()` yields text as it is made.

- `hf_pipeline`: transformers through langchain-huggingface's HuggingFacePipeline (the GPU production
  path: Mistral-7B in 4-bit NF4 with a peft LoRA).
- `llamacpp`: llama.cpp in this process through the `xllamacpp` wheel (the CPU default).
- `openai_compat`: any OpenAI-compatible inference server (vLLM, llama.cpp's server, TGI).

Every engine takes the same keyword arguments on `.stream()` / `.invoke()` (see `base.options`), stops
when `should_stop()` turns true, at its stop strings, or after `max_new_tokens`, and fills in a
`GenerationStats`.
"""
