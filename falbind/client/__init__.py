"""The fal client: sync/async clients, their I/O-free core, queue, retries, keys, files, webhooks, errors."""
