"""OpenAI-style image generation (``client.images.generate``) and the size mapping behind it."""
