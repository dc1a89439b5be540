"""The FNO block as one op in channels-last layout (``nol_fast::fno_block``)."""

from nol_fast.ops.fno_block.op import fno_block
from nol_fast.ops.fno_block.spec import BlockParams, BlockSpec

__all__ = ["BlockParams", "BlockSpec", "fno_block"]
