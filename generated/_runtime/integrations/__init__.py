"""falbind inside the systems users already run.

* :mod:`.litellm`: a LiteLLM custom provider (``pip install falbind[litellm]``);
* :mod:`.pipecat`: a Pipecat image generation service (``pip install falbind[pipecat]``).

Each module imports its host package, so import the one you use; this package imports neither.
"""
