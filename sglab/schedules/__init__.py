"""Pipeline schedules as per-rank action lists, and the pass that adds their communication.

A schedule maps (rank, ranks, microbatches, stages per rank) to that rank's compute actions,
written as torch's ``torch.distributed.pipelining`` writes them (``2F0`` = stage 2, forward,
microbatch 0); :func:`with_communication` turns a compute-only schedule into one with
``SEND_F``/``RECV_F``/``SEND_B``/``RECV_B``, as torch's ``_add_send_recv`` does. The method
registry (:mod:`sglab.methods`) names the schedule a pipelined method runs.

=====================  ======  ===============  =====  ====================================================
name                   layout  stages per rank  split  sizes that raise ValueError
=====================  ======  ===============  =====  ====================================================
``gpipe``, ``1f1b``    loop    1                no     none
``zb-h1``, ``zb-h2``   loop    1                yes    none
``interleaved-1f1b``   loop    any ``v >= 1``   no     ``m % max(1, m // ranks) != 0`` (torch's rule)
``interleaved-zb``     loop    any ``v >= 1``   yes    as interleaved-1f1b
``looped-bfs``         loop    any ``v >= 1``   no     none
``zbv``                v       2                yes    none
``dualpipev``          v       2                mixed  ``m < 2·ranks``
=====================  ======  ===============  =====  ====================================================

Every generator also raises for a rank outside ``0..ranks-1``, fewer than one microbatch, or a
number of stages per rank its schedule does not hold.
"""

from __future__ import annotations

from sglab.schedules.communication import with_communication
from sglab.schedules.flush import gpipe_actions, one_f_one_b_actions, zb_h1_actions, zb_h2_actions
from sglab.schedules.interleaved import interleaved_1f1b_actions, interleaved_zero_bubble_actions, looped_bfs_actions
from sglab.schedules.schedule import LAYOUTS, NumberedActions, Schedule, check_sizes
from sglab.schedules.v_shape import dualpipev_actions, zbv_actions

_ZB = "Qi et al., Zero Bubble Pipeline Parallelism, ICLR 2024"

#: Pipeline schedule name → :class:`Schedule`.
SCHEDULES: dict[str, Schedule] = {s.name: s for s in [
    Schedule("gpipe", gpipe_actions, paper="Huang et al., GPipe, NeurIPS 2019"),
    Schedule("1f1b", one_f_one_b_actions, paper="Narayanan et al., PipeDream-Flush / Megatron-LM, 2021"),
    Schedule("zb-h1", zb_h1_actions, split_backward=True, paper=_ZB + " (ZB-H1)"),
    Schedule("zb-h2", zb_h2_actions, split_backward=True, paper=_ZB + " (ZB-H2)"),
    Schedule("interleaved-1f1b", interleaved_1f1b_actions, stages_per_rank=None,
             paper="Narayanan et al., Efficient Large-Scale Language Model Training on GPU Clusters "
                   "Using Megatron-LM, SC 2021"),
    Schedule("looped-bfs", looped_bfs_actions, stages_per_rank=None,
             paper="Lamy-Poirier, Breadth-First Pipeline Parallelism, MLSys 2023"),
    Schedule("interleaved-zb", interleaved_zero_bubble_actions, stages_per_rank=None, split_backward=True,
             paper=_ZB + " (ZB1P, interleaved)"),
    Schedule("zbv", zbv_actions, layout="v", stages_per_rank=2, split_backward=True, paper=_ZB + " (ZB-V)"),
    Schedule("dualpipev", dualpipev_actions, layout="v", stages_per_rank=2, split_backward=True,
             paper="DeepSeek-AI, DeepSeek-V3 Technical Report, 2024 (DualPipe; its V-shaped half)"),
]}

__all__ = [
    "LAYOUTS", "SCHEDULES", "NumberedActions", "Schedule", "check_sizes", "with_communication",
    "dualpipev_actions", "gpipe_actions", "interleaved_1f1b_actions", "interleaved_zero_bubble_actions",
    "looped_bfs_actions", "one_f_one_b_actions", "zb_h1_actions", "zb_h2_actions", "zbv_actions",
]
