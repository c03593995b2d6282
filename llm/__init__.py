"""The model, on the bottom floor: what to load (`config`), loading it (`model`), the engines that run it
(`engines/`: transformers, llama.cpp, an OpenAI-compatible server) and one generation at a time
(`generation`). Imports nothing of the bot's own packages."""
