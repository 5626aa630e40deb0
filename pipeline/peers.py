"""The peers (`prompt.method`), one small spec each: the setting a peer needs, what it reads and the function
that trains it. open_clip's pattern: `pipeline.settings.plan` chooses the spec once, and the prompt stage runs its
`fit` function without asking which peer it is. Each peer's own values (the ones a null `prompt.*` param takes)
live in pipeline/prompt/values.py, which only the prompt stage reads.

Torch-free, so that config.py checks `prompt.method` against these names and every stage can read the Plan
without loading torch; a dep of the stages that read the Plan, so an edit here reruns them
(tests/test_stale_cache.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerSpec:
    name: str
    needs: str | None = None  # the setting it trains in (pipeline.settings.SETTINGS); None: any with images
    trains_on: str = ""  # what it learns from: support images, partially labelled images, texts
    resolution: str = "image"  # encode.image_resolution ("image") or encode.partial_resolution ("partial")
    features: tuple[str, ...] = ()  # whose global image features it reads: "train" (its training split), "test"
    dense: tuple[str, ...] = ()  # whose per-location features it reads (pipeline.encoding.dense), the same way
    fit: str | None = None  # "module:function" the prompt stage runs (torch, imported there only);
    # None: no peer, the prompt stage writes empty tables


PEERS: dict[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec("none"),
        PeerSpec(
            "coop",
            needs="few-shot",
            trains_on="support images",
            features=("train", "test"),
            fit="pipeline.prompt.coop:fit_coop",
        ),
        PeerSpec(
            "dualcoop",
            needs="partial labels",
            trains_on="partially labelled images",
            resolution="partial",
            dense=("train", "test"),
            fit="pipeline.prompt.dualcoop:fit_dualcoop",
        ),
        PeerSpec(
            "taidpt", trains_on="texts", features=("test",), dense=("test",), fit="pipeline.prompt.taidpt:fit_taidpt"
        ),
    )
}
