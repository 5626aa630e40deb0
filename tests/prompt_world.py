"""The prompt methods' synthetic world lives in `pipeline.prompt_world` (benchmarks/peer_defaults.py measures on
it too, and benchmarks import no test helper); the tests import it from here."""

from pipeline.prompt_world import DIM, LOCATIONS, NAMES, PromptWorld, tiny_clip_model  # noqa: F401
