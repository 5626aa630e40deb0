"""The prompt methods' synthetic world lives in `pipeline.testbeds.prompt_world` (benchmarks/peer_defaults.py measures on
it too, and benchmarks import no test helper); the tests import it from here."""

from pipeline.testbeds.prompt_world import DIM, LOCATIONS, NAMES, PromptWorld, tiny_clip_model  # noqa: F401
