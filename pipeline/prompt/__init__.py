"""The paper's comparisons as trainable methods on the same data, CLIP and evaluation (stage `prompt`):

- `coop`: CoOp, few-shot (Table 3's TaI-Adapter* integrates with it).
- `dualcoop`: DualCoOp, partial labels (Table 1's TaI-Adapter* integrates with it).
- `taidpt`: TaI-DPT, trained on the generated texts as the adapter is (Table 2's peer).

Shared pieces: `text` (learnable context through CLIP's frozen text encoder), `losses` (ranking,
asymmetric, BCE), `fit` (the peers' SGD and Dassl's schedule, epoch selection), `templates` (TaI-DPT's template
sentences); per-location image features live in `pipeline.encoding.dense` (an encode stage of their own).
docs/peers.md states every reading of the peers' code; docs/tables.md the commands and the paper's numbers.
"""
