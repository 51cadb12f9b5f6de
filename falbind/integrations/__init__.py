"""falbind inside the systems users already run: a LiteLLM provider and a Pipecat image service."""
