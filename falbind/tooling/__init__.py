"""Helpers the developer tools share: the CLI, the generator (``falbind_codegen``) and lint."""

# Why a package of its own: the CLI is the top layer (it parses arguments and dispatches to the
# generator and to lint), so what those tools share with it lives here, below all three; none of
# them imports ``falbind.cli`` (tests/test_layout.py checks it). Nothing here parses arguments or
# prints: input bounds (limits), the progress line (progress), endpoint lookup by any of its
# names (endpoints), a request schema's parameters (parameters) and pydantic's validation errors
# located in the arguments (validation_errors).
